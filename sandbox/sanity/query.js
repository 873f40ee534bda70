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
 * A candidate filter independent of the outer scope is answered once, with its indexable
 * tests replaced by their known per-document values (`filterByAtoms`).
 */

const {parse, evaluate, evaluateSync, Path} = require('groq-js')

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
 *   scan   plain groq-js, its async evaluator (the reference);
 *   fold   constant subqueries and `path()` patterns evaluated once instead of once per
 *          document, by groq-js's sync evaluator where it can;
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
    atomSets: new Map(), // an `==` / `in` node -> its exact set of ids, or null
    indexed: 0,
    scanned: 0,
  }
  if (mode === 'scan') {
    ctx.scanned = countEverything(tree)
    const value = await evaluate(tree, evalOptions(ctx, tree))
    return {result: await value.get(), indexed: 0, scanned: ctx.scanned}
  }
  const planned = await plan(tree, ctx, true)
  return {result: await evaluateFast(planned, ctx), indexed: ctx.indexed, scanned: ctx.scanned}
}

/**
 * groq-js's own synchronous evaluator: the same executors without a promise per node and
 * per document, which dominated a pruned query's cost. Where it cannot go (diff::, delta::
 * and any other async-only part) the async evaluator answers.
 */
async function evaluateFast(node, ctx) {
  const options = evalOptions(ctx, node)
  let value
  try {
    value = evaluateSync(node, options)
  } catch {
    value = await evaluate(node, options)
  }
  return value.get()
}

function evalOptions(ctx, node) {
  return {
    // Every `*` pruned away: skip building the whole-dataset array (rebuilt after each write).
    dataset: countEverything(node) > 0 ? ctx.store.all(ctx.perspective) : [],
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
      const docs = ctx.store.documentsInOrder(ids, ctx.perspective)
      ctx.indexed++
      if (isConstant(copy)) return hiddenParam(ctx, await filterByAtoms(docs, copy.expr, ctx))
      copy.base = hiddenParam(ctx, docs)
    }
  }
  if (ctx.fold && isConstantPath(copy)) {
    const pattern = await evaluateFast(copy.args[0], ctx)
    if (typeof pattern === 'string') return hiddenParam(ctx, new Path(pattern))
  }
  if (ctx.fold && !isRoot && isFoldable(copy)) {
    return hiddenParam(ctx, await evaluateConstant(copy, ctx))
  }
  return copy
}

/**
 * `docs[expr]` for a filter independent of any outer document. The filter's atoms (see
 * `atomOf`) are the `==`, `in` and `defined()` tests in its boolean skeleton (`&&`, `||`,
 * `!`, parentheses) whose value per document is known without groq-js. groq-js compares
 * `x in $list` element by element and evaluates both sides of every `&&` / `||`, so with a
 * page of ids those tests were most of a lookup's cost. Documents are grouped by their
 * atoms' values and groq-js evaluates each group's filter with the atoms replaced by those
 * values: once for the whole group when nothing else reads the document, else per
 * document. The kept documents are returned in dataset order.
 */
async function filterByAtoms(docs, expr, ctx) {
  const atoms = []
  await collectAtoms(expr, ctx, atoms)
  const groups = new Map() // atoms' values, one character each -> documents
  for (const doc of docs) {
    let key = ''
    for (const atom of atoms) key += ATOM_CHAR.get(atom.test(doc))
    const group = groups.get(key)
    if (group === undefined) groups.set(key, [doc])
    else group.push(doc)
  }
  const kept = new Set()
  for (const [key, group] of groups) {
    const values = new Map(atoms.map((atom, i) => [atom.node, CHAR_ATOM.get(key[i])]))
    const rest = substituteAtoms(expr, values)
    if (isDocumentIndependent(rest)) {
      // The same value for every document of the group; a filter keeps exactly `true`.
      if ((await evaluateFast(rest, ctx)) === true) for (const doc of group) kept.add(doc)
      continue
    }
    const filter = {type: 'Filter', base: hiddenParam(ctx, group), expr: rest}
    // groq-js's filter yields the very document objects it was given.
    for (const doc of await evaluateFast(filter, ctx)) kept.add(doc)
  }
  return docs.filter((doc) => kept.has(doc))
}

const ATOM_CHAR = new Map([[true, '1'], [false, '0'], [null, 'n']])
const CHAR_ATOM = new Map([['1', true], ['0', false], ['n', null]])

async function collectAtoms(expr, ctx, atoms) {
  switch (expr.type) {
    case 'Group':
    case 'Not':
      return collectAtoms(expr.base, ctx, atoms)
    case 'And':
    case 'Or':
      await collectAtoms(expr.left, ctx, atoms)
      return collectAtoms(expr.right, ctx, atoms)
    default: {
      const test = await atomOf(expr, ctx)
      if (test !== null) atoms.push({node: expr, test})
      return undefined
    }
  }
}

/**
 * A function giving, for a document, the value groq-js gives `expr` on it (true, false or
 * null), or null when `expr` is not one of these atoms:
 *   `path == const`, `path in [scalars]`   always true or false: the index's exact set;
 *   `path in path("…")`                    groq-js's own Path match, null for a non-string;
 *   `defined(path)`                        false exactly when the value is null or missing.
 */
async function atomOf(expr, ctx) {
  if (expr.type === 'OpCall') {
    const ids = await atomSet(expr, ctx)
    if (ids !== null) return (doc) => ids.has(doc._id)
    const path = attributePath(expr.left)
    if (expr.op !== 'in' || path === null || !isConstant(expr.right)) return null
    const pattern = await evaluateConstant(expr.right, ctx)
    if (!(pattern instanceof Path)) return null
    const segments = path.split('.')
    return (doc) => {
      const value = attributeValue(doc, segments)
      return typeof value === 'string' ? pattern.matches(value) : null
    }
  }
  if (expr.type === 'FuncCall' && expr.namespace === 'global' && expr.name === 'defined') {
    const path = expr.args.length === 1 ? attributePath(expr.args[0]) : null
    if (path === null) return null
    const segments = path.split('.')
    return (doc) => {
      const value = attributeValue(doc, segments)
      return value !== null && value !== undefined
    }
  }
  return null
}

/** `a.b.c` on a document as groq-js reads it: own attributes of objects (not arrays) only. */
function attributeValue(doc, segments) {
  let current = doc
  for (const segment of segments) {
    if (current === null || typeof current !== 'object' || Array.isArray(current)) return undefined
    if (!Object.prototype.hasOwnProperty.call(current, segment)) return undefined
    current = current[segment]
  }
  return current
}

function substituteAtoms(node, values) {
  if (values.has(node)) return {type: 'Value', value: values.get(node)}
  switch (node.type) {
    case 'Group':
    case 'Not':
      return {...node, base: substituteAtoms(node.base, values)}
    case 'And':
    case 'Or':
      return {...node, left: substituteAtoms(node.left, values), right: substituteAtoms(node.right, values)}
    default:
      return node
  }
}

/** Built only of values, parameters and boolean operators: reads no document. */
function isDocumentIndependent(node) {
  switch (node.type) {
    case 'Value':
    case 'Parameter':
      return true
    case 'Group':
    case 'Not':
      return isDocumentIndependent(node.base)
    case 'And':
    case 'Or':
      return isDocumentIndependent(node.left) && isDocumentIndependent(node.right)
    default:
      return false
  }
}

/**
 * `path("drafts.**")` with a constant pattern: groq-js compiles a new RegExp each time it
 * evaluates one, i.e. per document in a filter; a parameter holding groq-js's own Path
 * value (type "path", as `path()` returns) compiles it once.
 */
function isConstantPath(node) {
  if (node.type !== 'FuncCall' || node.namespace !== 'global' || node.name !== 'path') return false
  if (node.args.length !== 1) return false
  const arg = node.args[0]
  return arg.type === 'Value' || (arg.type === 'Parameter' && !arg.name.startsWith(' '))
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
      return atomSet(expr, ctx)
    default:
      return null
  }
}

/**
 * For `path == const` or `path in const` (a list of scalars): exactly the ids for which it
 * is true (as a Set that may be the index's own), else null. Remembered per node.
 */
async function atomSet(expr, ctx) {
  if (ctx.atomSets.has(expr)) return ctx.atomSets.get(expr)
  let ids = null
  if (expr.op === '==') ids = await equalityCandidates(expr, ctx)
  else if (expr.op === 'in') ids = await membershipCandidates(expr, ctx)
  ctx.atomSets.set(expr, ids)
  return ids
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
  return evaluateFast(node, ctx)
}

module.exports = {parseQuery, runQuery, QueryParseError, MODES}
