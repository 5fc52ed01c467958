// The one error type routes throw to answer a client with a status and a short reason.
// The app's error handler turns it into a JSON response; anything else is logged as a 500.

/** An error that carries the HTTP status and the message the client should read. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers?: HeadersInit) {
    super(message);
    this.name = "HttpError";
  }
}
