'use strict'
/**
 * GROQ queries with Sanity's own engine (groq-js), made fast by candidate pruning.
 *
 * groq-js answers `*[filter]` by scanning every document. Before evaluating, we walk the
 * parsed tree and, for each `*[filter]`, derive from the filter's indexable parts a
 * superset of the documents that can match (`path == const`, `path in const`, joined by
 * `&&` / `||`, where a const may be a parameter, a literal or a subquery that does not
 * depend on the outer scope). That `*` is then replaced by a hidden parameter holding
 * only those candidates, in dataset order. groq-js still applies the whole filter to
 * them, so answers are identical to a full scan; filters with nothing indexable scan all.
 */

const {parse, evaluate} = require('groq-js')

class QueryParseError extends Error {
  constructor(description, query, start, end) {
    super(description)
    this.query = query
    this.start = start
    this.end = end
  }

  toBody() {
    const error = {description: this.message, query: this.query, type: 'queryParseError'}
    if (this.start !== undefined) {
      error.start = this.start
      error.end = this.end
    }
    return {error}
  }
}

/** Parses a query and checks that every referenced parameter is provided. */
function parseQuery(query, params) {
  let tree
  try {
    tree = parse(query, {params})
  } catch (err) {
    if (typeof err.position === 'number') {
      const description = String(err.message).replace(/^Syntax error in GROQ query at position \d+: /, '')
      throw new QueryParseError(description, query, err.position, err.position + 1)
    }
    throw new QueryParseError(String(err.message), query)
  }
  for (const name of parameterNames(tree)) {
    if (!Object.prototype.hasOwnProperty.call(params, name)) {
      throw new QueryParseError(`param $${name} referenced, but not provided`, query)
    }
  }
  return tree
}

function parameterNames(node, names = new Set()) {
  forEachChild(node, (child) => parameterNames(child, names))
  if (node && node.type === 'Parameter') names.add(node.name)
  return names
}

function forEachChild(node, fn) {
  if (node === null || typeof node !== 'object') return
  for (const value of Object.values(node)) {
    if (Array.isArray(value)) {
      for (const item of value) if (item && typeof item === 'object') fn(item)
    } else if (value && typeof value === 'object' && typeof value.type === 'string') {
      fn(value)
    }
  }
}

const MODES = ['index', 'fold', 'scan']

/**
 * Runs a parsed query against the store in a perspective. Modes:
 *   scan   plain groq-js (the reference);
 *   fold   constant subqueries evaluated once instead of once per document;
 *   index  fold + every `*[filter]` reads only its candidate documents.
 * Returns {result, indexed, scanned}: how many `*[…]` were pruned or scanned whole.
 */
async function runQuery(store, tree, params, perspective, {mode = 'index', now = new Date()} = {}) {
  if (!MODES.includes(mode)) throw new Error(`unknown query mode ${mode}`)
  const ctx = {
    store,
    perspective,
    params: {...params},
    now,
    prune: mode === 'index',
    fold: mode !== 'scan',
    next: 0,
    indexed: 0,
    scanned: 0,
  }
  const planned = mode === 'scan' ? tree : await plan(tree, ctx, true)
  if (mode === 'scan') ctx.scanned = countEverything(tree)
  const value = await evaluate(planned, evalOptions(ctx))
  return {result: await value.get(), indexed: ctx.indexed, scanned: ctx.scanned}
}

function evalOptions(ctx) {
  return {
    dataset: ctx.store.all(ctx.perspective),
    params: ctx.params,
    timestamp: ctx.now,
    // `->` by id lookup instead of groq-js's linear search for the referenced document.
    dereference: ({_ref}) => {
      const doc = ctx.store.get(_ref)
      if (doc === undefined) return null
      if (ctx.perspective === 'published' && /^(drafts|versions)\./.test(_ref)) return null
      return doc
    },
  }
}

function countEverything(node) {
  let n = node && node.type === 'Everything' ? 1 : 0
  forEachChild(node, (child) => {
    n += countEverything(child)
  })
  return n
}

function hiddenParam(ctx, value) {
  const name = ` p${ctx.next++}` // a space: no query can name this parameter
  ctx.params[name] = value
  return {type: 'Parameter', name}
}

/**
 * Returns a copy of `node`, bottom-up: a prunable `*[filter]` reads a hidden parameter of
 * candidates; then a constant subquery (one containing `*`, independent of any document in
 * scope) is evaluated once and replaced by a hidden parameter holding its value, so
 * `x in *[…]._id` inside a filter costs one evaluation, not one per document.
 */
async function plan(node, ctx, isRoot = false) {
  if (node === null || typeof node !== 'object') return node
  const copy = Array.isArray(node) ? [] : {}
  for (const [key, value] of Object.entries(node)) {
    copy[key] = value && typeof value === 'object' ? await plan(value, ctx) : value
  }
  if (copy.type === 'Filter' && copy.base && copy.base.type === 'Everything') {
    const ids = ctx.prune ? await candidates(copy.expr, ctx) : null
    if (ids === null) {
      ctx.scanned++
    } else {
      copy.base = hiddenParam(ctx, ctx.store.documentsInOrder(ids, ctx.perspective))
      ctx.indexed++
    }
  }
  if (ctx.fold && !isRoot && isFoldable(copy)) {
    return hiddenParam(ctx, await evaluateConstant(copy, ctx))
  }
  return copy
}

/** A subquery worth evaluating once: constant, reads the dataset, makes no datetime values. */
function isFoldable(node) {
  if (!node || typeof node.type !== 'string') return false
  // A bare `*` stays: `*[filter]` must still see it to be pruned, and folding it gains nothing.
  if (node.type === 'Parameter' || node.type === 'Everything') return false
  return isConstant(node) && readsDataset(node) && !makesDateTime(node)
}

function readsDataset(node) {
  if (node.type === 'Everything') return true
  if (node.type === 'Parameter' && node.name.startsWith(' ')) return true
  let found = false
  forEachChild(node, (child) => {
    if (!found && readsDataset(child)) found = true
  })
  return found
}

// A folded value travels as JSON; datetime values would come back as strings.
function makesDateTime(node) {
  if (node.type === 'FuncCall' && (node.name === 'dateTime' || node.namespace === 'dateTime')) return true
  let found = false
  forEachChild(node, (child) => {
    if (!found && makesDateTime(child)) found = true
  })
  return found
}

/**
 * A superset (Set of ids) of documents for which `expr` can be true, or null for "any".
 * Sets may belong to the store's indexes: read them, never modify them.
 */
async function candidates(expr, ctx) {
  switch (expr.type) {
    case 'Group':
      return candidates(expr.base, ctx)
    case 'And': {
      const left = await candidates(expr.left, ctx)
      const right = await candidates(expr.right, ctx)
      if (left === null) return right
      if (right === null) return left
      const [small, large] = left.size <= right.size ? [left, right] : [right, left]
      const out = new Set()
      for (const id of small) if (large.has(id)) out.add(id)
      return out
    }
    case 'Or': {
      const left = await candidates(expr.left, ctx)
      if (left === null) return null
      const right = await candidates(expr.right, ctx)
      if (right === null) return null
      const out = new Set(left)
      for (const id of right) out.add(id)
      return out
    }
    case 'OpCall':
      if (expr.op === '==') return equalityCandidates(expr, ctx)
      if (expr.op === 'in') return membershipCandidates(expr, ctx)
      return null
    default:
      return null
  }
}

async function equalityCandidates(expr, ctx) {
  let path = attributePath(expr.left)
  let other = expr.right
  if (path === null) {
    path = attributePath(expr.right)
    other = expr.left
  }
  if (path === null || !isConstant(other)) return null
  const value = await evaluateConstant(other, ctx)
  if (!isIndexableScalar(value)) return null
  return lookup(ctx, path, [value])
}

async function membershipCandidates(expr, ctx) {
  const path = attributePath(expr.left)
  if (path === null || !isConstant(expr.right)) return null
  const value = await evaluateConstant(expr.right, ctx)
  if (!Array.isArray(value)) return null // path("…") patterns and ranges: scan
  const scalars = []
  for (const item of value) {
    if (item === null || item === undefined) return null // `x in [null]` matches missing x
    if (isIndexableScalar(item)) scalars.push(item)
    // Objects and arrays never compare equal in GROQ: they cannot match.
  }
  return lookup(ctx, path, scalars)
}

function isIndexableScalar(value) {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
}

function lookup(ctx, path, values) {
  if (path === '_id') {
    const ids = new Set()
    for (const value of values) if (typeof value === 'string' && ctx.store.get(value)) ids.add(value)
    return ids
  }
  return ctx.store.lookup(path, values)
}

/** `a.b.c` for an attribute chain on the filtered document itself, else null. */
function attributePath(node) {
  const names = []
  let current = node
  while (current && current.type === 'AccessAttribute') {
    names.unshift(current.name)
    current = current.base
  }
  if (names.length === 0) return null
  if (current !== undefined && current !== null && current.type !== 'This') return null
  return names.join('.')
}

/** True when `node` does not depend on the document being filtered (nor any outer one). */
function isConstant(node) {
  if (containsParent(node)) return false
  let root = node
  while (root && root.base && root.type !== 'Array') root = root.base
  if (!root) return false
  switch (root.type) {
    case 'Value':
    case 'Parameter':
    case 'Everything':
      return true
    case 'Array':
      return root.elements.every((element) => !element.isSplat && isConstant(element.value))
    default:
      return false
  }
}

function containsParent(node) {
  if (node && node.type === 'Parent') return true
  let found = false
  forEachChild(node, (child) => {
    if (!found && containsParent(child)) found = true
  })
  return found
}

async function evaluateConstant(node, ctx) {
  const value = await evaluate(node, evalOptions(ctx))
  return value.get()
}

module.exports = {parseQuery, runQuery, QueryParseError, MODES}
