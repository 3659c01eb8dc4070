/// The deployment environment (`APP_ENV`, or `NODE_ENV` as a fallback for existing deployments).
public enum AppEnvironment: String, Sendable, CaseIterable {
    case development
    case production
    case test
}

/// How log lines are written (`LOG_FORMAT`).
public enum LogFormat: String, Sendable, CaseIterable {
    /// One JSON object per line (the default in production).
    case json
    /// Colourised, human-readable lines (the default elsewhere).
    case pretty
}

/// Which handler runs each job (`JOB_HANDLER`).
public enum HandlerKind: String, Sendable, CaseIterable {
    /// Completes each job with `{"echo": prompt}`; for demos and tests.
    case echo
    /// Runs `JOB_COMMAND` once per job.
    case command
}
