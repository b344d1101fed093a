// Monitoring: the dashboard with plots (execution time and cost trends, p95 by type), anomalies,
// recommendations, alert rules, active alerts and their history. Plots are drawn by the vendored
// Chart.js (a classic script: window.Chart).

import { useEffect, useRef, useState } from "../vendor/preact-htm.module.js";
import { can, del, get, patch, post } from "../api.js";
import { LoadedTable, Loading, Notice, Severity, Table, When, html, useAction, useLoad, yesNo } from "../ui.js";

const BASE = "/tasks/monitoring";
const METRIC_FIELDS = [
  "execution_time_ms",
  "memory_usage_mb",
  "cpu_usage_percent",
  "error_count",
  "cost_usd",
  "queue_wait_time_ms",
  "tokens_used",
  "api_calls_count",
];
const CONDITIONS = ["gt", "gte", "lt", "lte", "eq"];
const SEVERITIES = ["low", "medium", "high", "critical"];
const ACCENT = "#2563eb";

function Plot({ type, labels, series, testid, unit }) {
  const canvas = useRef(null);
  useEffect(() => {
    if (!window.Chart || !canvas.current) return undefined;
    const chart = new window.Chart(canvas.current, {
      type,
      data: {
        labels,
        datasets: series.map((s) => ({
          label: s.label,
          data: s.data,
          borderColor: ACCENT,
          backgroundColor: type === "bar" ? "rgba(37, 99, 235, 0.6)" : "rgba(37, 99, 235, 0.15)",
          fill: type === "line",
          tension: 0.25,
          pointRadius: 3,
        })),
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: series.length > 1 } },
        scales: { y: { beginAtZero: true, title: { display: !!unit, text: unit } } },
      },
    });
    canvas.current.dataset.points = String(labels.length);
    return () => chart.destroy();
  }, [type, JSON.stringify(labels), JSON.stringify(series)]);
  if (!labels.length) return html`<p class="muted plot-empty" data-testid=${`${testid}-empty`}>No data in this period.</p>`;
  return html`<div class="plot"><canvas ref=${canvas} data-testid=${testid} role="img" aria-label=${testid}></canvas></div>`;
}

export function MonitoringPage({ params, navigate }) {
  const days = Number(params.days || 7);
  const dashboard = useLoad(() => get(`${BASE}/metrics/dashboard/`, { days }), [days], { every: 10000 });
  const byType = useLoad(() => get(`${BASE}/metrics/performance-by-type/`, { days, min_samples: 1 }), [days], {
    every: 10000,
  });
  const d = dashboard.data;
  const types = Object.entries((byType.data && byType.data.task_types) || {});
  return html`<section>
    <header class="page-head">
      <h1>Monitoring</h1>
      <label
        >Period
        <select value=${days} onChange=${(e) => navigate("/monitoring", { days: e.currentTarget.value })}>
          ${[7, 30, 90].map((n) => html`<option value=${n}>last ${n} days</option>`)}
        </select>
      </label>
    </header>
    <${Loading} state=${dashboard} />
    ${d
      ? html`<div class="cards">
            ${[
              ["Tasks", d.summary.total_tasks],
              ["Avg execution", `${Math.round(d.summary.avg_execution_time_ms || 0)} ms`],
              ["Avg memory", `${(d.summary.avg_memory_usage_mb || 0).toFixed(1)} MB`],
              ["Total cost", `$${(d.summary.total_cost_usd || 0).toFixed(4)}`],
              ["Tokens", d.summary.total_tokens_used],
              ["Error rate", `${(d.summary.error_rate_percent || 0).toFixed(1)} %`],
            ].map(([label, value]) => html`<div class="stat"><span>${label}</span><strong>${value}</strong></div>`)}
          </div>
          <div class="columns">
            <${DailyTrend} title="Execution time (daily average)" testid="plot-execution-time" unit="ms" label="avg ms" points=${d.trends.execution_time} value=${(p) => p.avg_ms} />
            <${DailyTrend} title="Cost (daily total)" testid="plot-cost" unit="USD" label="USD" points=${d.trends.cost} value=${(p) => p.total_usd} />
          </div>`
      : null}
    <div class="card">
      <h2>p95 execution time by type</h2>
      <${Loading} state=${byType} />
      ${byType.data
        ? html`<${Plot}
            type="bar"
            testid="plot-p95"
            unit="ms"
            labels=${types.map(([name]) => name)}
            series=${[{ label: "p95 ms", data: types.map(([, t]) => t.p95_execution_time_ms) }]}
          />`
        : null}
    </div>
    ${types.length
      ? html`<${Table}
          testid="performance-by-type"
          rows=${types.map(([name, t]) => ({ id: name, name, ...t }))}
          columns=${[
            ["Type", (t) => t.name],
            ["Runs", (t) => t.total_executions],
            ["Avg ms", (t) => Math.round(t.avg_execution_time_ms)],
            ["Min ms", (t) => Math.round(t.min_execution_time_ms)],
            ["p95 ms", (t) => Math.round(t.p95_execution_time_ms)],
            ["Max ms", (t) => Math.round(t.max_execution_time_ms)],
            ["Success", (t) => `${t.success_rate} %`],
            ["Trend", (t) => t.trend],
          ]}
        />`
      : null}
    ${d && d.top_expensive_tasks.length
      ? html`<h2>Most expensive types</h2>
          <${Table}
            rows=${d.top_expensive_tasks.map((t) => ({ id: t.task_type, ...t }))}
            columns=${[
              ["Type", (t) => t.task_type],
              ["Total", (t) => `$${t.total_cost_usd}`],
              ["Per task", (t) => `$${t.avg_cost_per_task}`],
              ["Tasks", (t) => t.task_count],
            ]}
          />`
      : null}
    <${Anomalies} days=${days} />
    <${Recommendations} />
    <${Alerts} />
  </section>`;
}

// One of the dashboard's daily series ([{date, ...}]) as a line plot of `value(point)`.
function DailyTrend({ title, testid, unit, label, points, value }) {
  return html`<div class="card">
    <h2>${title}</h2>
    <${Plot} type="line" testid=${testid} unit=${unit} labels=${points.map((p) => p.date)} series=${[{ label, data: points.map(value) }]} />
  </div>`;
}

function Anomalies({ days }) {
  const [sensitivity, setSensitivity] = useState("medium");
  const anomalies = useLoad(() => get(`${BASE}/metrics/anomalies/`, { days, sensitivity }), [days, sensitivity]);
  return html`<div class="card">
    <h2>
      Anomalies
      <select value=${sensitivity} onChange=${(e) => setSensitivity(e.currentTarget.value)}>
        ${["low", "medium", "high"].map((s) => html`<option value=${s}>${s} sensitivity</option>`)}
      </select>
    </h2>
    <${LoadedTable}
      state=${anomalies}
      rows=${(data) => data.anomalies}
      testid="anomalies"
      empty="No anomaly detected."
      columns=${[
        ["Task", (a) => a.task_id],
        ["Metric", (a) => a.metric],
        ["Value", (a) => a.value],
        ["Expected", (a) => `${a.expected_range[0]} – ${a.expected_range[1]}`],
        ["Severity", (a) => html`<${Severity} value=${a.severity} />`],
        ["Detected", (a) => html`<${When} value=${a.detected_at} />`],
        ["", (a) => a.description],
      ]}
    />
  </div>`;
}

function Recommendations() {
  const list = useLoad(() => get(`${BASE}/metrics/recommendations/`), []);
  return html`<div class="card">
    <h2>Recommendations</h2>
    <${Loading} state=${list} />
    ${list.data && list.data.recommendations.length === 0 ? html`<p class="muted">Nothing to recommend from the data so far.</p>` : null}
    <ul class="recommendations">
      ${((list.data && list.data.recommendations) || []).map(
        (r) => html`<li>
          <${Severity} value=${r.priority} /> <strong>${r.description}</strong>
          <div class="muted">${r.impact}</div>
          <div>${r.implementation}</div>
        </li>`,
      )}
    </ul>
  </div>`;
}

function Alerts() {
  const rules = useLoad(() => get(`${BASE}/alerts/`, { page_size: 100 }), []);
  const active = useLoad(() => get(`${BASE}/alerts/active/`), [], { every: 10000 });
  const history = useLoad(() => get(`${BASE}/alerts/history/`, { days: 7, page_size: 25 }), [], { every: 10000 });
  const action = useAction();
  const act = (fn, message) => action.run(fn, message).then(rules.reload);
  return html`<div class="card">
    <h2>Alert rules</h2>
    ${can("operator") ? html`<${NewAlertRule} onCreated=${rules.reload} />` : null}
    <${Notice} action=${action} />
    <${LoadedTable}
      state=${rules}
      testid="alert-rules"
      empty="No alert rule."
      columns=${[
        ["Name", (r) => r.name],
        ["Rule", (r) => html`<code>${r.metric_field} ${r.condition} ${r.threshold_value}</code>`],
        ["Types", (r) => (r.task_types || []).join(", ") || "all"],
        ["Severity", (r) => html`<${Severity} value=${r.severity} />`],
        ["Active", (r) => yesNo(r.is_active)],
        ["Triggered", (r) => html`${r.trigger_count}× <${When} value=${r.last_triggered_at} />`],
        [
          "",
          (r) => html`<span class="buttons">
            ${can("operator")
              ? html`<button class="small" onClick=${() => act(() => patch(`${BASE}/alerts/${r.id}/`, { is_active: !r.is_active }), "Saved.")}>
                  ${r.is_active ? "Disable" : "Enable"}
                </button>`
              : null}
            ${can("admin")
              ? html`<button class="small danger" onClick=${() => window.confirm(`Delete ${r.name}?`) && act(() => del(`${BASE}/alerts/${r.id}/`), "Deleted.")}>
                  Delete
                </button>`
              : null}
          </span>`,
        ],
      ]}
    />
    <h2>Active alerts</h2>
    <${LoadedTable}
      state=${active}
      rows=${(data) => data.alerts}
      testid="active-alerts"
      empty="No alert is active."
      columns=${[
        ["Rule", (a) => a.name],
        ["Triggered", (a) => html`<${When} value=${a.triggered_at} />`],
        ["Value", (a) => `${a.current_value} (threshold ${a.threshold_value})`],
        ["Severity", (a) => html`<${Severity} value=${a.severity} />`],
        ["Tasks", (a) => (a.affected_tasks || []).join(", ")],
      ]}
    />
    <h2>History (7 days)</h2>
    <${Loading} state=${history} />
    ${history.data
      ? html`<${Table}
          testid="alert-history"
          rows=${history.data.results}
          empty="No alert in the last 7 days."
          columns=${Object.keys(history.data.results[0] || {})
            .filter((k) => !["id", "brand"].includes(k))
            .slice(0, 7)
            .map((k) => [k.replace(/_/g, " "), (row) => (typeof row[k] === "object" ? JSON.stringify(row[k]) : String(row[k] ?? "-"))])}
        />`
      : null}
  </div>`;
}

function NewAlertRule({ onCreated }) {
  const [show, setShow] = useState(false);
  const empty = { name: "", metric_field: "execution_time_ms", condition: "gt", threshold_value: "", severity: "medium" };
  const [form, setForm] = useState(empty);
  const action = useAction();
  const set = (name) => (e) => setForm({ ...form, [name]: e.currentTarget.value });
  if (!show) return html`<p><button onClick=${() => setShow(true)}>New alert rule</button></p>`;
  const submit = async (e) => {
    e.preventDefault();
    const created = await action.run(
      () => post(`${BASE}/alerts/`, { ...form, threshold_value: Number(form.threshold_value) }),
      (r) => `Created ${r.name}.`,
    );
    if (created) {
      setForm(empty);
      onCreated();
    }
  };
  return html`<form class="inline-form" onSubmit=${submit}>
    <input required placeholder="name" value=${form.name} onInput=${set("name")} />
    <select value=${form.metric_field} onChange=${set("metric_field")}>
      ${METRIC_FIELDS.map((f) => html`<option value=${f}>${f}</option>`)}
    </select>
    <select value=${form.condition} onChange=${set("condition")}>
      ${CONDITIONS.map((c) => html`<option value=${c}>${c}</option>`)}
    </select>
    <input required type="number" step="any" placeholder="threshold" value=${form.threshold_value} onInput=${set("threshold_value")} />
    <select value=${form.severity} onChange=${set("severity")}>
      ${SEVERITIES.map((s) => html`<option value=${s}>${s}</option>`)}
    </select>
    <button class="primary" type="submit">Add</button>
    <button type="button" onClick=${() => setShow(false)}>Close</button>
    <${Notice} action=${action} />
  </form>`;
}

