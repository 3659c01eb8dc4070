import HTTPTypes
import Hummingbird
import Logging
import WorkerCore

/// Answers a request whose handler failed with an error it did not answer itself (the database
/// down, a row it cannot read): logged at `error` with the request, and a JSON body saying so.
///
/// Hummingbird answers such an error with an empty 500 and logs it at `debug` through the
/// server's logger, which the worker keeps at `warning` or above: an API client got a bare 500
/// and the operator no line at all, whatever `LOG_LEVEL`. Errors that carry their own answer
/// (``HTTPResponseError``: a body too large, 413) pass through unchanged.
struct UnexpectedErrorAnswer<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as any HTTPResponseError {
            throw error
        } catch {
            logger.error("Request failed", metadata: [
                "method": .string(request.method.rawValue), "path": .string(request.uri.path), "error": "\(error)",
            ])
            return Response(
                status: .internalServerError,
                headers: [.contentType: "application/json", .cacheControl: "no-store"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error":"# + JSONText.quoted(Self.message(for: error)) + "}"))
            )
        }
    }

    /// What the client is told: the store's explanation when it says nothing of the database
    /// (a job's state, the request's own fault), otherwise only that the worker failed: the
    /// others carry the database's own text (a refused privilege names its table and role, an
    /// unreadable row its values), which a user's token must not read.
    static func message(for error: any Error) -> String {
        if let error = error as? JobStoreError {
            switch error {
            case .invalidTransition, .invalidJob, .jobNotFound: return error.description
            default: break
            }
        }
        return "the worker could not answer this request (the database failed or did not answer); its log says why"
    }
}
