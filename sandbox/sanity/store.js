'use strict'
/**
 * The dataset: documents in insertion order plus equality indexes on attribute paths.
 *
 * Order matters: GROQ's `*` yields documents in dataset order, so an indexed scan must
 * return its candidates in that same order for answers to stay identical to a full scan.
 * Each document gets a sequence number when its id first appears; a replace keeps it.
 */

const DEFAULT_INDEXED_PATHS = [
  '_type',
  'stripeSessionId',
  'stripePaymentId',
  'stripePaymentIntentId',
  'paymentId',
  'clerkId',
  'user._ref',
  'tenant._ref',
  'passId',
]

/**
 * An equality index on one path: a Map per scalar type, keyed by the value itself, so
 * `1`, `"1"` and `true` stay apart exactly as GROQ's `==` keeps them apart.
 */
class PathIndex {
  constructor(path) {
    this.segments = path.split('.')
    this.byType = {string: new Map(), number: new Map(), boolean: new Map()}
  }

  bucket(value, create) {
    const map = this.byType[typeof value]
    if (map === undefined) return undefined // null, objects, arrays: `==` never matches by value
    let ids = map.get(value)
    if (ids === undefined && create) {
      ids = new Set()
      map.set(value, ids)
    }
    return ids
  }

  add(doc) {
    const ids = this.bucket(valueAt(doc, this.segments), true)
    if (ids !== undefined) ids.add(doc._id)
  }

  remove(doc) {
    const value = valueAt(doc, this.segments)
    const ids = this.bucket(value, false)
    if (ids === undefined) return
    ids.delete(doc._id)
    if (ids.size === 0) this.byType[typeof value].delete(value)
  }
}

/** Follows a dotted attribute path through plain objects only (as GROQ's `a.b` does). */
function valueAt(doc, segments) {
  let current = doc
  for (const segment of segments) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined
    current = current[segment]
  }
  return current
}

const EMPTY = new Set()

function isDraftOrVersion(id) {
  return id.startsWith('drafts.') || id.startsWith('versions.')
}

class Store {
  constructor(indexedPaths = DEFAULT_INDEXED_PATHS) {
    this.docs = new Map() // id -> document (insertion order = dataset order)
    this.seq = new Map() // id -> sequence number
    this.nextSeq = 0
    this.indexes = new Map() // path -> PathIndex
    this._arrays = {raw: null, published: null}
    for (const path of indexedPaths) this._buildIndex(path)
  }

  get size() {
    return this.docs.size
  }

  get(id) {
    return this.docs.get(id)
  }

  /** All documents visible in a perspective, in dataset order (cached until the next write). */
  all(perspective) {
    const key = perspective === 'published' ? 'published' : 'raw'
    if (this._arrays[key] === null) {
      const docs = Array.from(this.docs.values())
      this._arrays[key] = key === 'raw' ? docs : docs.filter((d) => !isDraftOrVersion(d._id))
    }
    return this._arrays[key]
  }

  /** Replaces the whole dataset (the `load` control and `--data`). */
  replaceAll(documents) {
    this.docs = new Map()
    this.seq = new Map()
    this.nextSeq = 0
    for (const doc of documents) this._put(doc)
    const paths = Array.from(this.indexes.keys())
    this.indexes = new Map()
    for (const path of paths) this._buildIndex(path)
    this._invalidate()
  }

  /** Applies committed changes: id -> new document, or null to delete. */
  commit(changes) {
    for (const [id, next] of changes) {
      const previous = this.docs.get(id)
      if (previous !== undefined) this._unindex(previous)
      if (next === null) {
        this.docs.delete(id)
        this.seq.delete(id)
      } else {
        this._put(next)
        this._index(next)
      }
    }
    this._invalidate()
  }

  /**
   * Ids whose value at `path` equals one of `values` (scalars), building the index on first
   * use. The answer may be the index's own set: callers must not modify it.
   */
  lookup(path, values) {
    if (!this.indexes.has(path)) this._buildIndex(path)
    const index = this.indexes.get(path)
    const buckets = values.map((value) => index.bucket(value, false)).filter((ids) => ids !== undefined)
    if (buckets.length === 0) return EMPTY
    if (buckets.length === 1) return buckets[0]
    const ids = new Set()
    for (const bucket of buckets) for (const id of bucket) ids.add(id)
    return ids
  }

  /** Documents for `ids` in dataset order, restricted to a perspective. */
  documentsInOrder(ids, perspective) {
    const entries = []
    for (const id of ids) {
      const doc = this.docs.get(id)
      if (doc === undefined) continue
      if (perspective === 'published' && isDraftOrVersion(id)) continue
      entries.push({seq: this.seq.get(id), doc}) // one lookup per id, not two per comparison
    }
    entries.sort((a, b) => a.seq - b.seq)
    return entries.map((entry) => entry.doc)
  }

  indexedPaths() {
    return Array.from(this.indexes.keys())
  }

  _put(doc) {
    if (!this.seq.has(doc._id)) this.seq.set(doc._id, this.nextSeq++)
    this.docs.set(doc._id, doc)
  }

  _invalidate() {
    this._arrays = {raw: null, published: null}
  }

  _buildIndex(path) {
    const index = new PathIndex(path)
    this.indexes.set(path, index)
    for (const doc of this.docs.values()) index.add(doc)
  }

  _index(doc) {
    for (const index of this.indexes.values()) index.add(doc)
  }

  _unindex(doc) {
    for (const index of this.indexes.values()) index.remove(doc)
  }
}

module.exports = {Store, isDraftOrVersion, DEFAULT_INDEXED_PATHS}
