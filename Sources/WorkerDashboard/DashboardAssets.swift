/// The dashboard's stylesheet and script, compiled into the binary and served from `/ui/assets/`
/// (the Content-Security-Policy allows scripts and styles from the dashboard itself only: no
/// inline script, no CDN). Light and dark follow the system; the layout holds at a phone's
/// 390 px (tables scroll sideways inside their box).
enum DashboardAssets {
    static let css = #"""
        :root { --bg: #ffffff; --fg: #1d2125; --muted: #65707b; --line: #d9dee3; --panel: #f5f7f9; --accent: #2156c2;
          --pending: #8a6d00; --processing: #2156c2; --completed: #1f7a3a; --failed: #b42318; --cancelled: #65707b; }
        @media (prefers-color-scheme: dark) {
          :root { --bg: #14171a; --fg: #e3e7ea; --muted: #98a2ad; --line: #2c3238; --panel: #1c2024; --accent: #7aa7ff;
            --pending: #e0b93b; --processing: #7aa7ff; --completed: #5cc27a; --failed: #ff7b6e; --cancelled: #98a2ad; }
        }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
        a { color: var(--accent); }
        .bar { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; padding: .6rem 1rem; border-bottom: 1px solid var(--line); background: var(--panel); }
        .bar nav a { margin-right: .75rem; }
        .brand { font-weight: 600; color: var(--fg); text-decoration: none; margin-right: auto; }
        main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
        h1 { font-size: 1.35rem; margin: .2rem 0 1rem; word-break: break-all; }
        h2 { font-size: 1.05rem; margin: 1.4rem 0 .5rem; }
        .muted { color: var(--muted); }
        .mono, pre, code, .seq { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
        pre { background: var(--panel); border: 1px solid var(--line); padding: .6rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
        .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(110px, 1fr)); gap: .5rem; }
        .tile { display: flex; flex-direction: column; padding: .6rem .8rem; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); color: var(--fg); text-decoration: none; }
        .tile .count { font-size: 1.5rem; font-weight: 600; }
        .tile .label, .badge { text-transform: lowercase; }
        .tile.pending .count, .badge.pending { color: var(--pending); }
        .tile.processing .count, .badge.processing { color: var(--processing); }
        .tile.completed .count, .badge.completed { color: var(--completed); }
        .tile.failed .count, .badge.failed, .error { color: var(--failed); }
        .tile.cancelled .count, .badge.cancelled { color: var(--cancelled); }
        .badge { font-weight: 600; }
        .scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .4rem .55rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: var(--panel); font-weight: 600; white-space: nowrap; }
        td.prompt { max-width: 28rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
        .fields th { width: 11rem; }
        .filters { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: .75rem; }
        .filters label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); }
        input, select, button { font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--line); border-radius: 4px; padding: .3rem .5rem; }
        button { cursor: pointer; background: var(--panel); }
        button.link { border: 0; background: none; color: var(--accent); padding: 0; }
        .inline { display: inline; }
        .bulk, .actions { margin: .5rem 0; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
        .notice { padding: .5rem .75rem; border: 1px solid var(--line); background: var(--panel); border-radius: 6px; }
        .login { display: flex; flex-direction: column; gap: .6rem; max-width: 22rem; }
        .login label { display: flex; flex-direction: column; }
        .chart { width: 100%; height: auto; max-height: 180px; border: 1px solid var(--line); border-radius: 6px; background: var(--panel); }
        .chart .completed { fill: var(--completed); }
        .chart .failed { fill: var(--failed); }
        .chart .axis { stroke: var(--line); }
        .chart text { fill: var(--muted); font-size: 10px; }
        .events { list-style: none; padding: 0; margin: 0; border: 1px solid var(--line); border-radius: 6px; max-height: 32rem; overflow-y: auto; }
        .events li { padding: .2rem .5rem; border-bottom: 1px solid var(--line); white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8rem; }
        .events .kind { color: var(--muted); }
        .events .kind.status { color: var(--processing); }
        .events .kind.log { color: var(--pending); }
        .seq { color: var(--muted); }
        """#

    static let javascript = #"""
        'use strict';
        (function () {
          // A job's live events: new lines as the worker stores them (Server-Sent Events, resumed
          // after the last line shown; EventSource reconnects with Last-Event-ID by itself).
          var list = document.getElementById('events');
          if (list && list.dataset.live === '1' && window.EventSource) {
            var state = document.getElementById('events-state');
            var source = new EventSource(list.dataset.stream + '?after=' + encodeURIComponent(list.dataset.after || '0'));
            var describe = function (event) {
              var data = event.data || {};
              if (event.kind === 'output' || event.kind === 'log') { return String(data.text); }
              if (event.kind === 'status') {
                var parts = [data.status];
                Object.keys(data).forEach(function (key) { if (key !== 'status') { parts.push(key + '=' + JSON.stringify(data[key])); } });
                return parts.join(' ');
              }
              return JSON.stringify(data);
            };
            var add = function (message) {
              var event = JSON.parse(message.data);
              if (list.querySelector('li[data-seq="' + event.seq + '"]')) { return; }
              var item = document.createElement('li');
              item.dataset.seq = String(event.seq);
              var seq = document.createElement('span'); seq.className = 'seq'; seq.textContent = String(event.seq);
              var kind = document.createElement('span'); kind.className = 'kind ' + event.kind; kind.textContent = event.kind;
              var text = document.createElement('span'); text.className = 'text'; text.textContent = describe(event);
              item.append(seq, ' ', kind, ' ', text);
              list.appendChild(item);
              list.scrollTop = list.scrollHeight;
              // An attempt's end is not the job's (a retry goes on in the same stream): the
              // stream stays open, and the server ends it when the job has ended.
              if (event.kind === 'status' && ['completed', 'failed', 'cancelled'].indexOf(event.data.status) >= 0) {
                var badge = document.getElementById('job-status');
                if (badge) { badge.textContent = event.data.status; badge.className = 'badge ' + event.data.status; }
              }
            };
            ['status', 'output', 'log', 'message', 'truncated'].forEach(function (kind) { source.addEventListener(kind, add); });
            // Ended by the server for good (its answer to the reconnection is 204): the job has
            // ended, whether or not an event said so (a pending job cancelled stores none).
            source.addEventListener('error', function () {
              if (source.readyState === EventSource.CLOSED && state) { state.textContent = 'The job has ended. Reload for its result.'; }
            });
          }

          // Pages marked data-refresh reload their #live part in place, unless a row is selected,
          // the tab is hidden, or the last reload has not answered yet (on a big table a slow
          // page's reloads piled up, each a query of the worker's pool).
          var every = parseInt(document.body.dataset.refresh || '0', 10);
          var reloading = false;
          if (every > 0 && window.fetch) {
            setInterval(function () {
              if (reloading || document.hidden) { return; }
              if (document.querySelector('#live input[type=checkbox]:checked')) { return; }
              reloading = true;
              fetch(window.location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
                .then(function (response) { return response.ok ? response.text() : null; })
                .then(function (html) {
                  if (!html) { return; }
                  var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('live');
                  var mine = document.getElementById('live');
                  if (fresh && mine) { mine.replaceWith(document.importNode(fresh, true)); }
                })
                .catch(function () {})
                .then(function () { reloading = false; });
            }, every * 1000);
          }

          // "All on this page" for bulk actions.
          document.addEventListener('change', function (event) {
            if (event.target && event.target.id === 'select-all') {
              document.querySelectorAll('#jobs input[name=id]').forEach(function (box) { box.checked = event.target.checked; });
            }
          });
        })();
        """#
}
