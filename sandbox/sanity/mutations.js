'use strict'
/**
 * One mutate request = one atomic transaction.
 *
 * Mutations are applied in order to an overlay over the committed store (later mutations
 * see earlier ones, as in Sanity). Nothing touches the store until every mutation has
 * succeeded; the caller then commits the overlay in one synchronous step, or drops it
 * (failure or dryRun). `_rev` of every written document is the transaction id, as Sanity does.
 */

const crypto = require('crypto')
const {TransactionFailure, mutationItemError} = require('./errors')

const ID_RE = /^[A-Za-z0-9._-]{1,128}$/
const SYSTEM_FIELDS = ['_id', '_rev', '_createdAt', '_updatedAt']
const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function randomId(length = 22) {
  const bytes = crypto.randomBytes(length)
  let out = ''
  for (const byte of bytes) out += ID_ALPHABET[byte % ID_ALPHABET.length]
  return out
}

/** Sanity's timestamp format: second precision, `Z`. */
function isoSeconds(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function validId(id) {
  return typeof id === 'string' && ID_RE.test(id) && !id.startsWith('-')
}

/** Permission a mutation needs; reported by the 403 of a read-only token. */
function permissionFor(mutation) {
  const kind = mutation && typeof mutation === 'object' ? Object.keys(mutation)[0] : undefined
  if (kind === 'patch') return 'update'
  if (kind === 'delete') return 'delete'
  return 'create'
}

/**
 * Applies `mutations` to an overlay. Returns {changes: Map(id -> doc|null), results}.
 * Throws TransactionFailure (with Sanity's error body) on the first failing mutation.
 * Synchronous on purpose: no other request can interleave between validation and commit.
 */
function applyTransaction(store, mutations, {transactionId, now}) {
  if (!Array.isArray(mutations)) {
    throw new TransactionFailure(400, {
      error: {description: 'The "mutations" property must be an array', type: 'httpBadRequest'},
    })
  }
  const changes = new Map()
  const stamp = isoSeconds(now)
  const read = (id) => (changes.has(id) ? changes.get(id) : store.get(id) ?? null)
  const write = (doc, createdAt) => ({
    ...doc,
    _rev: transactionId,
    _createdAt: createdAt,
    _updatedAt: stamp,
  })

  mutations.forEach((mutation, index) => {
    const fail = (status, error) => {
      throw new TransactionFailure(status, mutationItemError(error, index))
    }
    if (!mutation || typeof mutation !== 'object' || Object.keys(mutation).length !== 1) {
      fail(400, {description: 'Mutation must have exactly one operation', type: 'invalidMutationError'})
    }
    const [kind, body] = Object.entries(mutation)[0]
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      fail(400, {description: `Invalid "${kind}" mutation body`, type: 'invalidMutationError'})
    }
    switch (kind) {
      case 'create':
      case 'createIfNotExists':
      case 'createOrReplace': {
        let id = body._id
        if (id === undefined && kind === 'create') id = randomId()
        else if (kind === 'create' && typeof id === 'string' && id.endsWith('.')) id = id + randomId()
        if (id === undefined) {
          fail(400, {description: `"${kind}" requires a document ID`, type: 'invalidMutationError'})
        }
        if (!validId(id)) fail(400, {description: `Malformed document ID: ${JSON.stringify(id)}`, id, type: 'invalidDocumentIdError'})
        if (typeof body._type !== 'string' || body._type === '') {
          fail(400, {description: 'Document does not have a type', id, type: 'missingDocumentTypeError'})
        }
        const existing = read(id)
        if (existing !== null) {
          if (kind === 'create') {
            fail(409, {description: `Document by ID "${id}" already exists`, id, type: 'documentAlreadyExistsError'})
          }
          if (kind === 'createIfNotExists') return // exists: a no-op, no result
        }
        const createdAt =
          typeof body._createdAt === 'string' ? body._createdAt : existing ? existing._createdAt : stamp
        changes.set(id, write({...structuredClone(body), _id: id}, createdAt))
        return
      }
      case 'patch': {
        const ids = targetIds(body, fail)
        for (const id of ids) {
          const current = read(id)
          if (current === null) {
            fail(409, {description: `Cannot modify nonexistent document "${id}"`, id, type: 'documentNotFoundError'})
          }
          if (body.ifRevisionID !== undefined && body.ifRevisionID !== current._rev) {
            fail(409, {
              description: `Document by ID "${id}" has unexpected revision ID ("${current._rev}"), expected "${body.ifRevisionID}"`,
              id,
              type: 'conflictError',
            })
          }
          const next = applyPatch(structuredClone(current), body, (message) =>
            fail(400, {description: message, id, type: 'invalidPatchError'}),
          )
          for (const field of SYSTEM_FIELDS) next[field] = current[field]
          changes.set(id, write(next, current._createdAt))
        }
        return
      }
      case 'delete': {
        for (const id of targetIds(body, fail)) {
          if (read(id) === null) continue // deleting a missing document is fine
          changes.set(id, null)
        }
        return
      }
      default:
        fail(400, {description: `Unknown mutation type "${kind}"`, type: 'invalidMutationError'})
    }
  })
  return {changes, results: summarize(store, changes)}
}

/** One result per touched document, as Sanity reports: created, updated or deleted. */
function summarize(store, changes) {
  const results = []
  for (const [id, next] of changes) {
    const before = store.get(id) !== undefined
    if (next === null) {
      if (before) results.push({id, operation: 'delete'})
    } else {
      results.push({id, operation: before ? 'update' : 'create'})
    }
  }
  return results
}

function targetIds(body, fail) {
  if (typeof body.id === 'string') {
    if (!validId(body.id)) fail(400, {description: `Malformed document ID: ${JSON.stringify(body.id)}`, id: body.id, type: 'invalidDocumentIdError'})
    return [body.id]
  }
  // Patch/delete by query exists in Sanity; the reconciler never uses it, so the sandbox refuses it.
  fail(400, {description: 'Mutation needs an "id" (query targets are not supported here)', type: 'invalidMutationError'})
  return []
}

/** Sanity applies a patch's operations in this fixed order, whatever the key order. */
function applyPatch(doc, patch, invalid) {
  for (const [path, value] of Object.entries(patch.set || {})) setPath(doc, parsePath(path, invalid), value, true)
  for (const [path, value] of Object.entries(patch.setIfMissing || {})) setPath(doc, parsePath(path, invalid), value, false)
  for (const path of patch.unset || []) unsetPath(doc, parsePath(path, invalid))
  for (const [path, amount] of Object.entries(patch.inc || {})) addAt(doc, parsePath(path, invalid), amount, invalid)
  for (const [path, amount] of Object.entries(patch.dec || {})) addAt(doc, parsePath(path, invalid), -amount, invalid)
  return doc
}

/** `a.b[2].c` / `a[_key=="k"]` -> segments: strings (attributes), numbers, {key}. */
function parsePath(path, invalid) {
  const segments = []
  const re = /([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|\[_key\s*==\s*"([^"]*)"\]|(\.)/gy
  let match
  let last = 0
  while (last < path.length && (match = re.exec(path)) !== null) {
    if (match[1] !== undefined) segments.push(match[1])
    else if (match[2] !== undefined) segments.push(Number(match[2]))
    else if (match[3] !== undefined) segments.push({key: match[3]})
    last = re.lastIndex
  }
  if (last !== path.length || segments.length === 0) invalid(`Invalid patch path ${JSON.stringify(path)}`)
  return segments
}

function childIndex(container, segment) {
  if (typeof segment === 'number') return segment < 0 ? container.length + segment : segment
  return container.findIndex((item) => item && item._key === segment.key)
}

/** Walks to the parent of the last segment, creating objects when `create`; null if impossible. */
function parentOf(doc, segments, create) {
  let current = doc
  for (let i = 0; i < segments.length - 1; i++) {
    const segment = segments[i]
    if (typeof segment === 'string') {
      if (current === null || typeof current !== 'object' || Array.isArray(current)) return null
      if (current[segment] === undefined || current[segment] === null) {
        if (!create || typeof segments[i + 1] !== 'string') return null
        current[segment] = {}
      }
      current = current[segment]
    } else {
      if (!Array.isArray(current)) return null
      const index = childIndex(current, segment)
      if (index < 0 || index >= current.length) return null
      current = current[index]
    }
  }
  return current
}

function setPath(doc, segments, value, overwrite) {
  const parent = parentOf(doc, segments, true)
  if (parent === null || typeof parent !== 'object') return
  const last = segments[segments.length - 1]
  if (typeof last === 'string') {
    if (Array.isArray(parent)) return
    if (overwrite || parent[last] === undefined) parent[last] = structuredClone(value)
  } else if (Array.isArray(parent)) {
    const index = childIndex(parent, last)
    if (index >= 0 && index < parent.length && overwrite) parent[index] = structuredClone(value)
  }
}

function unsetPath(doc, segments) {
  const parent = parentOf(doc, segments, false)
  if (parent === null || typeof parent !== 'object') return
  const last = segments[segments.length - 1]
  if (typeof last === 'string') {
    if (!Array.isArray(parent)) delete parent[last]
  } else if (Array.isArray(parent)) {
    const index = childIndex(parent, last)
    if (index >= 0 && index < parent.length) parent.splice(index, 1)
  }
}

function addAt(doc, segments, amount, invalid) {
  if (typeof amount !== 'number') invalid('inc/dec needs a number')
  const parent = parentOf(doc, segments, false)
  if (parent === null || typeof parent !== 'object') return
  const last = segments[segments.length - 1]
  const key = typeof last === 'string' ? last : childIndex(parent, last)
  // Only existing numbers change; a missing field stays missing.
  if (typeof parent[key] === 'number') parent[key] += amount
}

module.exports = {applyTransaction, permissionFor, randomId, isoSeconds, validId}
