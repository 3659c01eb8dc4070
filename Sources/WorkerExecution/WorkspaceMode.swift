/// Where a job's command runs (`JOB_WORKSPACE`).
public enum WorkspaceMode: String, Sendable, CaseIterable {
    /// A fresh, empty directory per attempt, removed afterwards (as `JOB_KEEP_WORKDIR` says).
    case job
    /// A job with a session runs in its session's lasting directory, so each turn sees what the
    /// previous turns left; a job without a session still gets a fresh directory.
    case session
}
