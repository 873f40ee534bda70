'use strict'
/**
 * Test controls: injected latency, queued faults per endpoint kind, and the request log.
 *
 * A fault is consumed by the next request of its kind (`query`, `mutate`, `doc`):
 *   {status, headers, body}  answer with that instead of doing the request
 *   {drop: true}             destroy the socket without answering (nothing done)
 *   {drop_after: true}       do the request (e.g. commit), then destroy the socket
 *   {malformed: true}        answer 200 with a truncated JSON body (nothing done)
 *   {delay_ms}               wait first; alone, the request then runs normally
 */

const {rateLimited} = require('./errors')

const KINDS = ['query', 'mutate', 'doc']
const LOG_LIMIT = 50000

class Controls {
  constructor() {
    this.reset()
  }

  reset() {
    this.latencyMs = 0
    this.faults = {query: [], mutate: [], doc: []}
    this.log = []
  }

  addFault(spec) {
    if (!spec || !KINDS.includes(spec.kind)) {
      throw new Error(`fault "kind" must be one of ${KINDS.join(', ')}`)
    }
    const fault = {
      status: spec.status === undefined || spec.status === null ? null : Number(spec.status),
      headers: spec.headers || {},
      body: spec.body === undefined ? null : spec.body,
      delayMs: Number(spec.delay_ms || 0),
      drop: Boolean(spec.drop),
      dropAfter: Boolean(spec.drop_after),
      malformed: Boolean(spec.malformed),
    }
    this.faults[spec.kind].push(fault)
    return this.pending()
  }

  takeFault(kind) {
    const queue = this.faults[kind]
    return queue && queue.length > 0 ? queue.shift() : null
  }

  pending() {
    return Object.fromEntries(KINDS.map((kind) => [kind, this.faults[kind].length]))
  }

  record(entry) {
    this.log.push(entry)
    // Bounded so a long benchmark cannot grow the log without end.
    if (this.log.length > LOG_LIMIT) this.log.splice(0, this.log.length - LOG_LIMIT)
  }
}

/** Body of an injected status fault: the given one, or Sanity's usual one for that status. */
function faultBody(fault) {
  if (fault.body !== null) return fault.body
  if (fault.status === 429) return rateLimited()
  return {
    statusCode: fault.status,
    error: fault.status >= 500 ? 'Internal Server Error' : 'Error',
    message: `Injected fault (${fault.status})`,
  }
}

module.exports = {Controls, faultBody, KINDS}
