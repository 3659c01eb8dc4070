import Mustache

/// The dashboard's pages as Mustache templates, compiled into the binary (the static image needs
/// no file beside it). `{{name}}` escapes HTML, so every value from the database renders as
/// text; `{{{…}}}` appears only for the chart, which ``DashboardChart`` draws from numbers.
enum DashboardTemplates {
    static func library() throws -> MustacheLibrary {
        var library = MustacheLibrary()
        for (name, text) in all { try library.register(text, named: name) }
        return library
    }

    static let all: [(String, String)] = [
        ("header", header), ("footer", footer), ("overview", overview), ("jobs", jobs), ("job", job),
        ("session", session), ("login", login), ("confirm", confirm), ("message", message),
    ]

    static let header = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · mobvibe worker</title>
        <link rel="stylesheet" href="/ui/assets/dashboard.css">
        <script src="/ui/assets/dashboard.js" defer></script>
        </head>
        <body{{#refresh}} data-refresh="{{refresh}}"{{/refresh}}>
        <header class="bar">
          <a class="brand" href="/ui">mobvibe worker</a>
          <nav><a href="/ui">Overview</a> <a href="/ui/jobs">Jobs</a></nav>
          {{#signedIn}}<form method="post" action="/ui/logout" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button class="link">Sign out</button></form>{{/signedIn}}
        </header>
        <main>
        {{#notice}}<p class="notice" id="notice">{{notice}}</p>{{/notice}}
        """#

    static let footer = #"""
        </main>
        </body>
        </html>
        """#

    static let overview = #"""
        {{>header}}
        <div id="live">
        <h1>Overview</h1>
        <section class="tiles">
          {{#statuses}}<a class="tile {{name}}" href="/ui/jobs?status={{name}}"><span class="count" id="count-{{name}}">{{count}}</span><span class="label">{{name}}</span></a>{{/statuses}}
          <div class="tile"><span class="count" id="count-total">{{total}}</span><span class="label">total</span></div>
        </section>
        <h2>Last hour</h2>
        <p class="muted"><span id="hour-completed">{{hourCompleted}}</span> completed, <span id="hour-failed">{{hourFailed}}</span> failed (each bar a minute)</p>
        {{{chart}}}
        <h2>Queues</h2>
        <div class="scroll"><table id="queues">
          <thead><tr><th>Queue</th><th>Pending</th><th>Processing</th><th>Completed</th><th>Failed</th><th>Cancelled</th><th>Oldest pending</th></tr></thead>
          <tbody>{{#queues}}<tr><td><a href="/ui/jobs?queue={{name}}">{{name}}</a></td><td>{{pending}}</td><td>{{processing}}</td><td>{{completed}}</td><td>{{failed}}</td><td>{{cancelled}}</td><td>{{oldest}}</td></tr>{{/queues}}
          {{^queues}}<tr><td colspan="7" class="muted">No jobs yet.</td></tr>{{/queues}}</tbody>
        </table></div>
        <h2>Workers</h2>
        <p class="muted">Workers holding leases now, and their running jobs. Sessions: {{sessionsRunning}} running, {{sessionsWaiting}} turns waiting.</p>
        <div class="scroll"><table id="workers">
          <thead><tr><th>Worker</th><th>Running</th><th>Jobs</th></tr></thead>
          <tbody>{{#workers}}<tr><td>{{name}}</td><td>{{count}}</td><td>{{#jobs}}<a href="/ui/jobs/{{id}}">{{short}}</a> {{/jobs}}{{#more}}and {{more}} more{{/more}}</td></tr>{{/workers}}
          {{^workers}}<tr><td colspan="3" class="muted">No job is running.</td></tr>{{/workers}}</tbody>
        </table></div>
        </div>
        {{>footer}}
        """#

    static let jobs = #"""
        {{>header}}
        <h1>Jobs</h1>
        <form method="get" action="/ui/jobs" class="filters" id="filters">
          <label>Status <select name="status"><option value="">any</option>{{#statusOptions}}<option value="{{name}}"{{#selected}} selected{{/selected}}>{{name}}</option>{{/statusOptions}}</select></label>
          <label>Queue <input name="queue" value="{{queue}}" size="10"></label>
          <label>Session <input name="session" value="{{session}}" size="12"></label>
          <label>User <input name="user" value="{{user}}" size="12"></label>
          <label>Prompt <input name="q" value="{{q}}" size="14" id="filter-text"></label>
          <button id="apply-filters">Filter</button>
        </form>
        {{#error}}<p class="error">{{error}}</p>{{/error}}
        <form method="post" action="/ui/jobs/bulk" id="bulk">
        <input type="hidden" name="csrf" value="{{csrf}}">
        {{#actions}}<div class="bulk"><button name="action" value="retry" id="bulk-retry">Retry selected</button> <button name="action" value="cancel" id="bulk-cancel">Cancel selected</button> <label><input type="checkbox" id="select-all"> all on this page</label></div>{{/actions}}
        <div id="live">
        <div class="scroll"><table id="jobs" class="jobs">
          <thead><tr>{{#actions}}<th></th>{{/actions}}<th>Job</th><th>Status</th><th>Queue</th><th>Prompt</th><th>Attempts</th><th>Created</th></tr></thead>
          <tbody>{{#rows}}<tr data-id="{{id}}" data-status="{{status}}">{{#actions}}<td><input type="checkbox" name="id" value="{{id}}" aria-label="select {{short}}"></td>{{/actions}}<td><a href="/ui/jobs/{{id}}">{{short}}</a></td><td><span class="badge {{status}}">{{status}}</span></td><td>{{queue}}</td><td class="prompt">{{prompt}}</td><td>{{attempts}}/{{maxAttempts}}</td><td>{{created}}</td></tr>{{/rows}}
          {{^rows}}<tr><td colspan="7" class="muted" id="no-jobs">No jobs match.</td></tr>{{/rows}}</tbody>
        </table></div>
        </div>
        </form>
        {{#next}}<p><a href="{{next}}" id="next-page">Older jobs →</a></p>{{/next}}
        {{>footer}}
        """#

    static let job = #"""
        {{>header}}
        <h1>Job <span class="mono">{{id}}</span> <span class="badge {{status}}" id="job-status">{{status}}</span></h1>
        {{#actions}}<div class="actions">
          {{#cancellable}}<form method="post" action="/ui/jobs/{{id}}/cancel" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button id="cancel">Cancel</button></form>{{/cancellable}}
          {{#retryable}}<form method="post" action="/ui/jobs/{{id}}/retry" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button id="retry">Retry</button></form>{{/retryable}}
        </div>{{/actions}}
        <div class="scroll"><table class="fields" id="fields"><tbody>
          {{#fields}}<tr><th>{{name}}</th><td>{{#link}}<a href="{{link}}">{{value}}</a>{{/link}}{{^link}}{{value}}{{/link}}</td></tr>{{/fields}}
        </tbody></table></div>
        <h2>Prompt</h2>
        <pre id="prompt">{{prompt}}</pre>
        <h2>Payload</h2>
        <pre id="payload">{{payload}}</pre>
        {{#result}}<h2>Result</h2><pre id="result">{{result}}</pre>{{/result}}
        {{#lastError}}<h2>Last error</h2><pre id="last-error" class="error">{{lastError}}</pre>{{/lastError}}
        {{#hasAttemptErrors}}<h2>Errors by attempt</h2><ol id="attempt-errors">{{#attemptErrors}}<li>attempt {{attempt}}: {{error}}</li>{{/attemptErrors}}</ol>{{/hasAttemptErrors}}
        <h2>Events</h2>
        <p class="muted" id="events-state">{{#final}}The job has ended.{{/final}}{{^final}}Following live.{{/final}}</p>
        <ol id="events" class="events" data-stream="/ui/jobs/{{id}}/events" data-after="{{lastSequence}}" data-live="{{^final}}1{{/final}}">
          {{#events}}<li data-seq="{{seq}}"><span class="seq">{{seq}}</span> <span class="kind {{kind}}">{{kind}}</span> <span class="text">{{text}}</span></li>{{/events}}
        </ol>
        {{#moreEvents}}<p class="muted">Showing the first {{shown}} events; <code>worker jobs logs {{id}}</code> prints them all.</p>{{/moreEvents}}
        {{>footer}}
        """#

    static let session = #"""
        {{>header}}
        <h1>Session <span class="mono">{{id}}</span></h1>
        <p class="muted">Its turns in the order they run.</p>
        <div id="live"><div class="scroll"><table id="turns">
          <thead><tr><th>#</th><th>Job</th><th>Status</th><th>Prompt</th><th>Attempts</th><th>Created</th><th>Duration</th></tr></thead>
          <tbody>{{#turns}}<tr><td>{{number}}</td><td><a href="/ui/jobs/{{id}}">{{short}}</a></td><td><span class="badge {{status}}">{{status}}</span></td><td class="prompt">{{prompt}}</td><td>{{attempts}}</td><td>{{created}}</td><td>{{duration}}</td></tr>{{/turns}}
          {{^turns}}<tr><td colspan="7" class="muted">No turns.</td></tr>{{/turns}}</tbody>
        </table></div></div>
        {{>footer}}
        """#

    static let login = #"""
        {{>header}}
        <h1>Sign in</h1>
        <form method="post" action="/ui/login" class="login" id="login">
          <label>API token <input type="password" name="token" id="token" autocomplete="current-password" autofocus required></label>
          <button id="sign-in">Sign in</button>
        </form>
        {{#error}}<p class="error" id="login-error">{{error}}</p>{{/error}}
        {{>footer}}
        """#

    static let confirm = #"""
        {{>header}}
        <h1>{{verb}} {{count}} jobs?</h1>
        <form method="post" action="/ui/jobs/bulk" id="confirm-form">
          <input type="hidden" name="csrf" value="{{csrf}}">
          <input type="hidden" name="action" value="{{action}}">
          <input type="hidden" name="confirmed" value="yes">
          {{#ids}}<input type="hidden" name="id" value="{{.}}">{{/ids}}
          <button id="confirm">{{verb}} {{count}} jobs</button> <a href="/ui/jobs">Back</a>
        </form>
        {{>footer}}
        """#

    static let message = #"""
        {{>header}}
        <h1>{{heading}}</h1>
        <p id="message">{{text}}</p>
        {{#hasDetails}}<ul id="details">{{#details}}<li>{{.}}</li>{{/details}}</ul>{{/hasDetails}}
        <p><a href="{{back}}">Back</a></p>
        {{>footer}}
        """#
}
