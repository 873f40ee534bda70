'use strict'
/**
 * Error bodies in the shapes Sanity's API answers with.
 *
 * - Auth (401) and rate limits (429) use the gateway shape {statusCode, error, message}.
 * - Query errors: {error: {type: "queryParseError", description, query, start?, end?}}.
 * - Mutation errors: {error: {type: "mutationError", description: "Mutation(s) failed with
 *   N error(s)", items: [{error: {type, description, …}, index}]}}.
 */

class HttpError extends Error {
  constructor(status, body, headers = {}) {
    super(typeof body === 'string' ? body : JSON.stringify(body))
    this.status = status
    this.body = body
    this.headers = headers
  }
}

class TransactionFailure extends HttpError {}

function mutationItemError(error, index) {
  return {
    error: {
      description: 'Mutation(s) failed with 1 error(s)',
      items: [{error, index}],
      type: 'mutationError',
    },
  }
}

const unauthorized = () =>
  new HttpError(401, {
    statusCode: 401,
    error: 'Unauthorized',
    message: 'Session not found',
    errorCode: 'SIO-401-ANF',
  })

/** A read-only token on mutate: Sanity names the permission the first mutation needs. */
const insufficientPermissions = (permission) =>
  new HttpError(
    403,
    mutationItemError(
      {
        description: `Insufficient permissions; permission "${permission}" required`,
        permission,
        type: 'insufficientPermissionsError',
      },
      0,
    ),
  )

const badRequest = (description) => new HttpError(400, {error: {description, type: 'httpBadRequest'}})

const notFound = (description) => new HttpError(404, {error: {description, type: 'httpNotFound'}})

const uriTooLong = () =>
  new HttpError(414, {
    statusCode: 414,
    error: 'URI Too Long',
    message: 'Request URI too long; use a POST request with the query in the body',
  })

const payloadTooLarge = () =>
  new HttpError(413, {statusCode: 413, error: 'Payload Too Large', message: 'Request body exceeds 4000000 bytes'})

const rateLimited = () => ({
  statusCode: 429,
  error: 'Too Many Requests',
  message: 'API rate limit exceeded',
})

module.exports = {
  HttpError,
  TransactionFailure,
  mutationItemError,
  unauthorized,
  insufficientPermissions,
  badRequest,
  notFound,
  uriTooLong,
  payloadTooLarge,
  rateLimited,
}
