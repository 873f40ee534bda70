#!/usr/bin/env node
'use strict'
/**
 * Local stand-in for Sanity's HTTP API (query, mutate, doc) on 127.0.0.1.
 *
 *   node server.js --port 0 [--data export.ndjson] [--project p] [--dataset production]
 *                  [--write-token t] [--read-token t] [--query-mode index|fold|scan]
 *                  [--no-index (= scan)] [--stdin-lifeline]
 *
 * Prints `LISTENING <port>` on stdout once it accepts connections. Test controls live
 * under /_sandbox/ (no auth): latency, faults, log, reset, load, dump, stats, index.
 */

const fs = require('fs')
const http = require('http')
const {Store} = require('./store')
const {parseQuery, runQuery, QueryParseError, MODES} = require('./query')
const {applyTransaction, permissionFor, randomId} = require('./mutations')
const {Controls, faultBody} = require('./controls')
const errors = require('./errors')

const MAX_GET_URL = 11 * 1024
const MAX_BODY = 4000000
const PUBLISHED_DEFAULT_FROM = '2025-02-19'
const API_PATH = /^\/v(\d{4}-\d{2}-\d{2}|1|X)\/data\/(query|mutate|doc)\/([^/]+)(?:\/(.*))?$/

function parseArgs(argv) {
  const options = {
    port: 0,
    data: null,
    project: 'sandbox',
    dataset: 'production',
    writeToken: 'sanity-write-sandbox',
    readToken: 'sanity-read-sandbox',
    queryMode: 'index',
  }
  const names = {
    '--port': 'port',
    '--data': 'data',
    '--project': 'project',
    '--dataset': 'dataset',
    '--write-token': 'writeToken',
    '--read-token': 'readToken',
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--no-index') options.queryMode = 'scan'
    else if (arg === '--query-mode' && MODES.includes(argv[i + 1])) options.queryMode = argv[++i]
    else if (arg === '--stdin-lifeline') options.stdinLifeline = true
    else if (names[arg] && i + 1 < argv.length) options[names[arg]] = argv[++i]
    else throw new Error(`unknown or incomplete argument: ${arg}`)
  }
  options.port = Number(options.port)
  return options
}

/** Parses an NDJSON export; blank lines are skipped, documents without `_id` refused. */
function parseNdjson(text, now = new Date()) {
  const docs = []
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z')
  // Documents without a revision get one: a random prefix per load plus a counter (cheap).
  const revPrefix = randomId(12)
  let revs = 0
  text.split('\n').forEach((line, n) => {
    if (line.trim() === '') return
    let doc
    try {
      doc = JSON.parse(line)
    } catch (err) {
      throw new Error(`line ${n + 1}: ${err.message}`)
    }
    if (!doc || typeof doc !== 'object' || typeof doc._id !== 'string') {
      throw new Error(`line ${n + 1}: a document needs a string _id`)
    }
    doc._rev ??= revPrefix + (revs++).toString(36)
    doc._createdAt ??= stamp
    doc._updatedAt ??= doc._createdAt
    docs.push(doc)
  })
  return docs
}

function toNdjson(docs) {
  return docs.map((doc) => JSON.stringify(doc)).join('\n') + (docs.length ? '\n' : '')
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = []
    let size = 0
    req.on('data', (chunk) => {
      size += chunk.length
      if (limit !== null && size > limit) {
        reject(errors.payloadTooLarge())
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function parseJsonBody(text) {
  try {
    return text === '' ? {} : JSON.parse(text)
  } catch {
    throw errors.badRequest('Request body is not valid JSON')
  }
}

function send(res, status, body, headers = {}) {
  const payload = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  })
  res.end(payload)
}

function defaultPerspective(version) {
  if (/^\d{4}-\d{2}-\d{2}$/.test(version) && version >= PUBLISHED_DEFAULT_FROM) return 'published'
  return 'raw'
}

class SanityStandIn {
  constructor(options) {
    this.options = options
    this.store = new Store()
    this.queryMode = options.queryMode
    this.controls = new Controls()
  }

  async handle(req, res) {
    const started = process.hrtime.bigint()
    const url = new URL(req.url, 'http://127.0.0.1')
    if (url.pathname.startsWith('/_sandbox/')) return this.handleControl(req, res, url)

    const match = API_PATH.exec(url.pathname)
    const entry = {kind: match ? match[2] : 'other', method: req.method, path: url.pathname, status: 0}
    const finish = (status, extra = {}) => {
      Object.assign(entry, extra, {status, ms: Number(process.hrtime.bigint() - started) / 1e6})
      this.controls.record(entry)
    }
    try {
      if (!match) throw errors.notFound(`No route for ${req.method} ${url.pathname}`)
      const [, version, kind, dataset, rest] = match
      const fault = this.controls.takeFault(kind)
      if (this.controls.latencyMs > 0) await sleep(this.controls.latencyMs)
      if (fault) {
        if (fault.delayMs > 0) await sleep(fault.delayMs)
        if (fault.drop) {
          finish(0, {fault: 'drop'})
          req.socket.destroy()
          return
        }
        if (fault.malformed) {
          finish(200, {fault: 'malformed'})
          send(res, 200, '{"result": [{"_id": "trunc')
          return
        }
        if (fault.status !== null) {
          finish(fault.status, {fault: 'status'})
          send(res, fault.status, faultBody(fault), fault.headers)
          return
        }
      }
      const {status, body} = await this.dispatch(req, url, {version, kind, dataset, rest}, entry)
      if (fault && fault.dropAfter) {
        finish(0, {fault: 'drop_after'})
        req.socket.destroy()
        return
      }
      finish(status)
      send(res, status, body)
    } catch (err) {
      if (err instanceof errors.HttpError) {
        finish(err.status)
        send(res, err.status, err.body, err.headers)
      } else {
        process.stderr.write(`sanity stand-in: ${err.stack || err}\n`)
        finish(500)
        send(res, 500, {statusCode: 500, error: 'Internal Server Error', message: String(err.message || err)})
      }
    }
  }

  /** Which role the bearer token has: 'write', 'read'; throws 401 otherwise. */
  authenticate(req) {
    const header = req.headers.authorization || ''
    const token = header.startsWith('Bearer ') ? header.slice(7) : null
    if (token !== null && token === this.options.writeToken) return 'write'
    if (token !== null && token === this.options.readToken) return 'read'
    throw errors.unauthorized()
  }

  async dispatch(req, url, route, entry) {
    if (route.kind === 'query' && req.method === 'GET' && req.url.length > MAX_GET_URL) {
      throw errors.uriTooLong()
    }
    const role = this.authenticate(req)
    if (route.dataset !== this.options.dataset) {
      throw errors.notFound(`Dataset "${route.dataset}" not found for project ID "${this.options.project}"`)
    }
    if (route.kind === 'query') return this.query(req, url, route, entry)
    if (route.kind === 'mutate') return this.mutate(req, url, role, entry)
    return this.documents(req, route)
  }

  async query(req, url, route, entry) {
    let query
    let params = {}
    if (req.method === 'GET') {
      query = url.searchParams.get('query')
      for (const [key, raw] of url.searchParams) {
        if (!key.startsWith('$')) continue
        try {
          params[key.slice(1)] = JSON.parse(raw)
        } catch {
          throw errors.badRequest(`Unable to parse value of "${key}=${raw}". Please quote string values.`)
        }
      }
    } else if (req.method === 'POST') {
      const body = parseJsonBody(await readBody(req, MAX_BODY))
      query = body.query
      params = body.params && typeof body.params === 'object' ? body.params : {}
    } else {
      throw new errors.HttpError(405, {error: {description: 'Method not allowed', type: 'httpMethodNotAllowed'}})
    }
    if (typeof query !== 'string' || query === '') throw errors.badRequest('Missing "query" parameter')
    const perspective = url.searchParams.get('perspective') || defaultPerspective(route.version)
    if (perspective !== 'raw' && perspective !== 'published') {
      throw errors.badRequest(`Unsupported perspective "${perspective}" (the sandbox knows raw and published)`)
    }
    const started = process.hrtime.bigint()
    let tree
    try {
      tree = parseQuery(query, params)
    } catch (err) {
      if (err instanceof QueryParseError) throw new errors.HttpError(400, err.toBody())
      throw err
    }
    const outcome = await runQuery(this.store, tree, params, perspective, {mode: this.queryMode})
    const ms = Math.round(Number(process.hrtime.bigint() - started) / 1e6)
    entry.perspective = perspective
    entry.index = `${outcome.indexed}/${outcome.indexed + outcome.scanned}`
    entry.queryMs = Number(process.hrtime.bigint() - started) / 1e6
    return {status: 200, body: {query, result: outcome.result === undefined ? null : outcome.result, ms}}
  }

  async mutate(req, url, role, entry) {
    if (req.method !== 'POST') {
      throw new errors.HttpError(405, {error: {description: 'Method not allowed', type: 'httpMethodNotAllowed'}})
    }
    const body = parseJsonBody(await readBody(req, MAX_BODY))
    const mutations = body.mutations
    entry.mutations = Array.isArray(mutations) ? mutations.length : 0
    if (role !== 'write') throw errors.insufficientPermissions(permissionFor(Array.isArray(mutations) ? mutations[0] : null))
    const visibility = url.searchParams.get('visibility') || 'sync'
    if (!['sync', 'async', 'deferred'].includes(visibility)) {
      throw errors.badRequest(`Invalid visibility "${visibility}"`)
    }
    const dryRun = url.searchParams.get('dryRun') === 'true'
    const transactionId =
      typeof body.transactionId === 'string' && body.transactionId !== '' ? body.transactionId : randomId()
    entry.transactionId = transactionId
    entry.dryRun = dryRun
    // Validate and apply on an overlay; commit all or nothing (synchronously: no interleaving).
    const {changes, results} = applyTransaction(this.store, mutations, {transactionId, now: new Date()})
    if (!dryRun) this.store.commit(changes)
    const returnDocuments = url.searchParams.get('returnDocuments') === 'true'
    const out = results.map((r) =>
      returnDocuments && r.operation !== 'delete' ? {...r, document: changes.get(r.id)} : r,
    )
    return {status: 200, body: {transactionId, results: out}}
  }

  documents(req, route) {
    if (req.method !== 'GET') {
      throw new errors.HttpError(405, {error: {description: 'Method not allowed', type: 'httpMethodNotAllowed'}})
    }
    const ids = (route.rest || '').split(',').map((id) => decodeURIComponent(id)).filter((id) => id !== '')
    const documents = []
    const omitted = []
    for (const id of ids) {
      const doc = this.store.get(id)
      if (doc === undefined) omitted.push({id, reason: 'existence'})
      else documents.push(doc)
    }
    return {status: 200, body: {documents, omitted}}
  }

  async handleControl(req, res, url) {
    const c = this.controls
    const name = url.pathname.slice('/_sandbox/'.length)
    const json = async () => parseJsonBody(await readBody(req, null))
    try {
      switch (`${req.method} ${name}`) {
        case 'GET latency':
          return send(res, 200, {ms: c.latencyMs})
        case 'POST latency':
          c.latencyMs = Number((await json()).ms || 0)
          return send(res, 200, {ms: c.latencyMs})
        case 'GET faults':
          return send(res, 200, {pending: c.pending()})
        case 'POST faults':
          return send(res, 200, {pending: c.addFault(await json())})
        case 'DELETE faults':
          c.faults = {query: [], mutate: [], doc: []}
          return send(res, 200, {pending: c.pending()})
        case 'GET log':
          return send(res, 200, {entries: c.log})
        case 'POST log/reset':
        case 'DELETE log':
          c.log = []
          return send(res, 200, {entries: []})
        case 'POST reset':
          c.reset()
          return send(res, 200, {ok: true})
        case 'POST load': {
          const docs = parseNdjson(await readBody(req, null))
          this.store.replaceAll(docs)
          return send(res, 200, {documents: this.store.size})
        }
        case 'GET dump':
          res.writeHead(200, {'content-type': 'application/x-ndjson'})
          return res.end(toNdjson(this.store.all('raw')))
        case 'GET stats': {
          const cpu = process.cpuUsage()
          return send(res, 200, {
            documents: this.store.size,
            cpuSeconds: (cpu.user + cpu.system) / 1e6,
            cpuUserSeconds: cpu.user / 1e6,
            cpuSystemSeconds: cpu.system / 1e6,
            rssBytes: process.memoryUsage().rss,
            uptimeSeconds: process.uptime(),
            queryMode: this.queryMode,
            indexedPaths: this.store.indexedPaths(),
            project: this.options.project,
            dataset: this.options.dataset,
          })
        }
        case 'POST index': {
          // {"mode": "index"|"fold"|"scan"} or {"enabled": bool} (index / scan)
          const body = await json()
          const mode = body.mode ?? (body.enabled ? 'index' : 'scan')
          if (!MODES.includes(mode)) throw new Error(`mode must be one of ${MODES.join(', ')}`)
          this.queryMode = mode
          return send(res, 200, {queryMode: mode})
        }
        default:
          return send(res, 404, {error: `unknown control ${req.method} /_sandbox/${name}`})
      }
    } catch (err) {
      const status = err instanceof errors.HttpError ? err.status : 400
      return send(res, status, {error: String(err.message || err)})
    }
  }
}

function main() {
  const options = parseArgs(process.argv.slice(2))
  const app = new SanityStandIn(options)
  if (options.data) {
    const started = Date.now()
    app.store.replaceAll(parseNdjson(fs.readFileSync(options.data, 'utf8')))
    process.stderr.write(`sanity stand-in: loaded ${app.store.size} documents in ${Date.now() - started} ms\n`)
  }
  // Large enough that we, not Node's header limit, answer long GET queries (414 above ~11 KB).
  const server = http.createServer({maxHeaderSize: 64 * 1024}, (req, res) => {
    app.handle(req, res).catch((err) => {
      process.stderr.write(`sanity stand-in: ${err.stack || err}\n`)
      if (!res.headersSent) send(res, 500, {statusCode: 500, error: 'Internal Server Error', message: 'unexpected'})
    })
  })
  server.keepAliveTimeout = 30000
  server.listen(options.port, '127.0.0.1', () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`)
  })
  const stop = () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
    setTimeout(() => process.exit(0), 500).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  if (options.stdinLifeline) {
    // The launching process holds our stdin open; when it dies, we go too (no orphans).
    process.stdin.on('end', stop)
    process.stdin.on('error', stop)
    process.stdin.resume()
  }
}

if (require.main === module) main()

module.exports = {SanityStandIn, parseArgs, parseNdjson, toNdjson}
