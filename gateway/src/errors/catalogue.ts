// The only table of error codes: each envelope code, its HTTP status and its public message.
// Messages are safe to show any client: they never contain keys, tokens or internal detail.
// The README's error table documents every code listed here (a unit test keeps them in step).

export const catalogue = {
  invalid_request: { status: 400, message: 'The request is malformed.' },
  invalid_parameters: { status: 400, message: 'Invalid request parameters.' },
  missing_api_key: { status: 401, message: 'An API key is required. Send it in the x-api-key header.' },
  invalid_api_key: { status: 401, message: 'The provided API key is invalid or has been revoked' },
  invalid_admin_token: { status: 401, message: 'A valid admin bearer token is required.' },
  forbidden: { status: 403, message: "This API key doesn't have permission to access this resource." },
  route_not_found: { status: 404, message: 'No route matches this method and path.' },
  key_not_found: { status: 404, message: 'The API key does not exist.' },
  request_timeout: { status: 408, message: 'The client took too long to send the request.' },
  key_exists: { status: 409, message: 'An API key with this value already exists.' },
  payload_too_large: { status: 413, message: 'The request body is larger than allowed.' },
  unknown_tier: { status: 422, message: 'The tier does not exist.' },
  validation_failed: { status: 422, message: 'The request is well-formed but contains semantic errors.' },
  rate_limit_exceeded: { status: 429, message: 'API rate limit exceeded.' },
  too_many_concurrent_requests: { status: 429, message: 'Too many requests in flight for this API key.' },
  too_many_failed_attempts: { status: 429, message: 'Too many failed authentication attempts from this address.' },
  headers_too_large: { status: 431, message: 'The request headers are too large.' },
  internal_error: {
    status: 500,
    message: 'An unexpected error occurred. Please try again or contact support if the issue persists.',
  },
  bad_gateway: { status: 502, message: 'The upstream service returned an invalid response or could not be reached.' },
  service_unavailable: { status: 503, message: 'The service is temporarily unavailable. Please try again later.' },
  gateway_timeout: { status: 504, message: 'The upstream service did not respond in time.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof catalogue;
