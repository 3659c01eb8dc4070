import Foundation

/// Who is calling the job API, as ``APIToken`` found out.
enum APICaller: Sendable, Hashable {
    /// The bearer of `API_TOKEN` (or, while it is unset, a process on this machine): a backend or
    /// an operator, who may read and change every job.
    case backend
    /// A Supabase user, by a verified access token: may read their own jobs and their events only.
    case user(UUID)

    /// Whether this caller may see `job`'s owner's jobs: a user sees only their own, and any
    /// other job is answered as missing (404), so that ids cannot be probed.
    func maySee(owner: UUID?) -> Bool {
        switch self {
        case .backend: true
        case .user(let id): owner == id
        }
    }
}
