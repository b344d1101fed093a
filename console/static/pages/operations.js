// Queues (live depth from the broker, workers per queue) and workers (online, load, current tasks).

import { useState } from "../vendor/preact-htm.module.js";
import { get } from "../api.js";
import { Bar, Fields, LoadedTable, Loading, Table, When, html, link, useLoad } from "../ui.js";

const QUEUES = ["critical", "high", "normal", "low"];
const REFRESH_MS = 3000;

export function QueuesPage() {
  const stats = useLoad(() => get("/tasks/queue-stats/"), [], { every: REFRESH_MS });
  const overview = useLoad(() => get("/tasks/monitoring/workers/overview/"), [], { every: REFRESH_MS });
  const queues = (stats.data && stats.data.queues) || {};
  const perQueue = (overview.data && overview.data.queues) || {};
  const rows = QUEUES.filter((q) => queues[q] || perQueue[q]).map((name) => ({
    id: name,
    name,
    ...(queues[name] || {}),
    workers: (perQueue[name] || {}).workers,
    avg_load: (perQueue[name] || {}).avg_load,
  }));
  const health = overview.data && overview.data.system_health;
  return html`<section>
    <header class="page-head"><h1>Queues</h1><span class="muted">refreshed every ${REFRESH_MS / 1000} s</span></header>
    <${Loading} state=${stats} />
    ${stats.data
      ? html`<${Table}
          testid="queues"
          rows=${rows}
          columns=${[
            ["Queue", (q) => html`<a href=${link(`/tasks?priority=${q.name}&status=active`)}>${q.name}</a>`],
            ["Pending", (q) => q.pending ?? 0],
            ["Running", (q) => q.running ?? 0],
            ["Today", (q) => q.total_today ?? 0],
            ["Broker ready", (q) => q.broker_ready ?? "-"],
            ["Broker unacked", (q) => q.broker_unacked ?? "-"],
            ["Consumers", (q) => q.consumers ?? "-"],
            ["Workers", (q) => q.workers ?? 0],
            ["Avg load", (q) => q.avg_load ?? "-"],
          ]}
        />
        <p class="muted">${stats.data.total_tasks} tasks of this brand in all.</p>`
      : null}
    ${health
      ? html`<h2>System health</h2>
          <${Fields}
            rows=${[
              ["Status", html`<span class=${`badge health-${health.overall_status}`}>${health.overall_status}</span>`],
              ["Workers online", `${overview.data.online_workers} of ${overview.data.total_workers}`],
              ["Active tasks", health.total_active_tasks],
              ["Average CPU", `${health.avg_cpu_percent ?? "-"} %`],
              ["Average memory", `${health.avg_memory_percent ?? "-"} %`],
              ["Average load", health.avg_load_average],
            ]}
          />`
      : html`<${Loading} state=${overview} />`}
  </section>`;
}

export function WorkersPage() {
  const [onlineOnly, setOnlineOnly] = useState(true);
  const workers = useLoad(
    () => get("/tasks/monitoring/workers/", { page_size: 100, ...(onlineOnly ? { is_online: "true" } : {}) }),
    [onlineOnly],
    { every: REFRESH_MS },
  );
  const [open, setOpen] = useState(null);
  return html`<section>
    <header class="page-head">
      <h1>Workers</h1>
      <label class="inline"
        ><input type="checkbox" checked=${onlineOnly} onChange=${(e) => setOnlineOnly(e.currentTarget.checked)} />
        online only</label
      >
    </header>
    <${LoadedTable}
      state=${workers}
      testid="workers"
      empty="No worker has announced itself."
      columns=${[
        ["Name", (w) => html`<button class="small" title="current tasks" onClick=${() => setOpen(open === w.id ? null : w.id)}>${w.worker_name}</button>`],
        ["Online", (w) => html`<span class=${`badge ${w.is_online ? "status-completed" : "status-cancelled"}`}>${w.is_online ? "online" : "offline"}</span>`],
        ["Queues", (w) => [].concat(w.queue_name || []).join(", ")],
        ["Active", (w) => w.active_tasks],
        ["Processed", (w) => w.processed_tasks],
        ["Failed", (w) => w.failed_tasks],
        ["CPU", (w) => html`<${Bar} value=${w.cpu_percent} />`],
        ["Memory", (w) => html`<${Bar} value=${w.memory_percent} />`],
        ["Load", (w) => w.load_average],
        ["Heartbeat", (w) => html`<${When} value=${w.last_heartbeat} />`],
      ]}
    />
    ${open ? html`<${WorkerDetail} id=${open} />` : null}
  </section>`;
}

function WorkerDetail({ id }) {
  const worker = useLoad(() => get(`/tasks/monitoring/workers/${id}/`), [id], { every: REFRESH_MS });
  if (!worker.data) return html`<${Loading} state=${worker} />`;
  const w = worker.data;
  const recent = w.recent_performance || {};
  return html`<div class="card" data-testid="worker-detail">
    <h2>${w.worker_name}</h2>
    <${Fields}
      rows=${[
        ["Uptime", `${w.uptime_hours ?? "-"} h`],
        ["Success rate", `${w.success_rate ?? "-"} %`],
        ["Last hour", recent.last_hour && `${recent.last_hour.tasks_completed} done, ${recent.last_hour.errors} errors`],
        ["Last 24 hours", recent.last_24_hours && `${recent.last_24_hours.tasks_completed} done, ${recent.last_24_hours.errors} errors`],
      ]}
    />
    <h3>Current tasks (this brand's)</h3>
    <${Table}
      rows=${w.current_tasks || []}
      empty="Idle."
      columns=${[
        ["Task", (t) => html`<a href=${link(`/tasks?search=${encodeURIComponent(t.task_id)}`)}>${t.task_id}</a>`],
        ["Type", (t) => t.task_type],
        ["Started", (t) => html`<${When} value=${t.started_at} />`],
        ["Expected end", (t) => html`<${When} value=${t.estimated_completion} />`],
      ]}
    />
  </div>`;
}
