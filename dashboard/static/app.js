// AIIA status page: polls /api/status and renders it with DOM calls only (no innerHTML,
// no inline style), so the strict Content-Security-Policy holds and log text stays text.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const state = { pollSeconds: 5, timer: null, last: null, logService: null, logStamp: null,
                  logPicked: false, lastOk: null, testAsked: false };

  // ---- small helpers -------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) if (child) node.append(child);
    return node;
  }
  function fill(id, ...children) {
    const node = document.getElementById(id);
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
    return node;
  }
  function parseTime(text) { const t = Date.parse(text || ""); return Number.isNaN(t) ? null : t; }
  function ago(text) {
    const t = parseTime(text);
    if (t === null) return "—";
    let s = Math.round((Date.now() - t) / 1000);
    const future = s < 0; s = Math.abs(s);
    let out;
    if (s < 90) out = s + " s";
    else if (s < 5400) out = Math.round(s / 60) + " min";
    else if (s < 2 * 86400) out = Math.round(s / 3600) + " h";
    else out = Math.round(s / 86400) + " days";
    return future ? "in " + out : out + " ago";
  }
  function utc(text) {
    const t = parseTime(text);
    return t === null ? "—" : new Date(t).toISOString().replace("T", " ").slice(0, 16) + " UTC";
  }
  function when(text) { return el("span", { title: utc(text) }, ago(text)); }
  function mib(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    const m = bytes / 1048576;
    return m >= 1024 ? (m / 1024).toFixed(1) + " GiB" : m.toFixed(m < 10 ? 1 : 0) + " MiB";
  }
  function pct(value, digits) {
    if (value === null || value === undefined) return "—";
    if (value >= 100) return "100 %";
    return value.toFixed(digits === undefined ? 1 : digits) + " %";
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 120) return Math.round(seconds) + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }
  function badge(text, level, title) { return el("span", { class: "badge " + (level || ""), title }, text); }
  const OUTCOME_LEVEL = { succeeded: "ok", in_progress: "", failed: "critical",
    failed_health_check: "critical", failed_migration: "critical", switched_back: "warning",
    unknown: "warning" };

  // ---- SVG graphs ------------------------------------------------------------------------
  function sparkline(values, options) {
    const o = Object.assign({ width: 200, height: 34, min: 0, max: null, kind: "" }, options);
    const box = svg("svg", { class: "spark", viewBox: `0 0 ${o.width} ${o.height}`,
      preserveAspectRatio: "none", role: "img", "aria-label": o.label || "history" });
    const present = (values || []).filter((v) => v !== null && v !== undefined);
    if (!present.length) {
      box.append(svg("text", { x: 2, y: o.height - 4, class: "muted", fill: "currentColor",
        "font-size": 10 }, document.createTextNode("no data yet")));
      return box;
    }
    const max = o.max !== null ? o.max : Math.max(...present, o.floor || 0) || 1;
    const step = values.length > 1 ? o.width / (values.length - 1) : o.width;
    const y = (v) => (o.height - 2) - ((Math.min(v, max) - o.min) / (max - o.min || 1)) * (o.height - 4);
    let segment = [];
    const segments = [];
    values.forEach((v, i) => {
      if (v === null || v === undefined) { if (segment.length) segments.push(segment); segment = []; }
      else segment.push([i * step, y(v)]);
    });
    if (segment.length) segments.push(segment);
    for (const points of segments) {
      const line = points.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
      if (points.length > 1) {
        const area = `${points[0][0].toFixed(1)},${o.height} ${line} ${points[points.length - 1][0].toFixed(1)},${o.height}`;
        box.append(svg("polygon", { class: "area " + o.kind, points: area }));
      }
      box.append(svg("polyline", { class: "line " + o.kind, points: line }));
    }
    const lastSeg = segments[segments.length - 1];
    const lastPoint = lastSeg[lastSeg.length - 1];
    box.append(svg("circle", { class: "dot", cx: lastPoint[0], cy: lastPoint[1], r: 2 }));
    const title = svg("title");
    title.textContent = (o.label || "") + " · max " + (Math.max(...present)).toFixed(1) + (o.unit || "");
    box.append(title);
    return box;
  }

  function availabilityStrip(availability) {
    const values = (availability && availability.values) || [];
    const width = Math.max(values.length, 1) * 4;
    const box = svg("svg", { class: "strip", viewBox: `0 0 ${width} 10`, preserveAspectRatio: "none",
      role: "img", "aria-label": "availability over 24 hours" });
    const start = parseTime(availability && availability.start);
    values.forEach((v, i) => {
      const cls = v === null ? "none" : v >= 0.999 ? "up" : v >= 0.9 ? "degraded" : "down";
      const cell = svg("rect", { x: i * 4, y: 0, width: 3.2, height: 10, rx: 0.6, class: cls });
      const title = svg("title");
      const t = start !== null ? new Date(start + i * availability.step_s * 1000).toISOString().slice(11, 16) : "";
      title.textContent = `${t} UTC · ${v === null ? "no probes" : (v * 100).toFixed(1) + " % up"}`;
      cell.append(title);
      box.append(cell);
    });
    return box;
  }

  function memoryBar(used, limit, percent) {
    const level = percent >= 90 ? "critical" : percent >= 75 ? "warning" : "";
    const width = percent === null || percent === undefined ? 0 : Math.min(percent, 100) * 0.8;
    return el("div", { class: "bar" },
      svg("svg", { viewBox: "0 0 80 8", preserveAspectRatio: "none", "aria-hidden": "true" },
        svg("rect", { class: "track", x: 0, y: 0, width: 80, height: 8, rx: 4 }),
        svg("rect", { class: "fill " + level, x: 0, y: 0, width: width.toFixed(1), height: 8, rx: 4 })),
      el("span", {}, `${mib(used)} / ${mib(limit)}`,
        percent !== null && percent !== undefined ? el("span", { class: "muted" }, ` · ${percent.toFixed(0)} %`) : null));
  }

  // ---- sections ---------------------------------------------------------------------------
  function renderHeader(data) {
    const alerts = data.alerts || [];
    const critical = alerts.filter((a) => a.severity === "critical").length;
    const warnings = alerts.length - critical;
    const pill = document.getElementById("overall");
    pill.className = "pill " + data.overall;
    pill.textContent = data.overall === "ok" ? "All systems normal"
      : [critical ? critical + " critical" : "", warnings ? warnings + " warning" + (warnings > 1 ? "s" : "") : ""]
        .filter(Boolean).join(" · ");
    document.title = (critical ? `(${critical}) ` : "") + "AIIA status";
    const host = data.host || {};
    fill("hostname", `${host.hostname || "?"} · up ${duration(host.uptime_s)}`);
    const age = data.collector_age_s;
    fill("freshness", `updated ${new Date(parseTime(data.generated_at)).toISOString().slice(11, 19)} UTC · `,
      el("span", { id: "collected", title: utc(data.collected_at) },
        age === null ? "never collected" : `collected ${ago(data.collected_at)}`));
  }

  function renderAlerts(alerts) {
    if (!alerts.length) {
      fill("alert-list", el("li", { class: "alert clear" },
        el("span", {}, "Nothing needs attention: every service, probe, certificate and backup is fine.")));
      return;
    }
    fill("alert-list", alerts.map((a) => el("li", { class: "alert " + a.severity },
      el("span", { class: "sev " + a.severity }, a.severity),
      el("span", { class: "subject" }, a.subject,
        // "backups · backup" says nothing twice: show the area only when it adds something.
        a.subject.toLowerCase().startsWith(a.area) ? null : el("span", { class: "area" }, " · " + a.area)),
      el("span", { class: "message" }, a.message))));
  }

  function uptimeStat(label, window) {
    const value = window ? window.percent : null;
    const level = value === null || value === undefined ? "" : value < 99 ? "critical" : value < 99.9 ? "warning" : "";
    let sub = "no probes yet";
    if (window && value !== null) {
      sub = window.down_s ? "down " + duration(window.down_s) : "no downtime";
      if (window.coverage_percent < 99) sub += ` · ${window.coverage_percent.toFixed(0)} % observed`;
    }
    return el("div", { class: "stat" }, el("div", { class: "label" }, "Uptime " + label),
      el("div", { class: "value " + level }, pct(value, value !== null && value < 100 ? 2 : 0)),
      el("div", { class: "sub", title: window ? "since " + utc(window.since) : "" }, sub));
  }

  function errorStat(label, window) {
    const share = window ? window.share_percent : null;
    const level = share === null || share === undefined ? "" : share >= 5 ? "critical" : share >= 1 ? "warning" : "";
    return el("div", { class: "stat" }, el("div", { class: "label" }, "5xx " + label),
      el("div", { class: "value " + level }, share === null || share === undefined ? "—" : pct(share, share < 1 ? 2 : 1)),
      el("div", { class: "sub" }, window ? `${window.errors_5xx} of ${window.requests} req` : "no requests"));
  }

  function renderEnvironments(data) {
    const releases = (data.releases && data.releases.by_environment) || {};
    const cards = (data.environments || []).map((env) => {
      const probe = env.probe;
      const level = !probe ? "unknown" : probe.ok ? "ok" : "critical";
      const rel = releases[env.name] || {};
      const live = rel.live, attempt = rel.last_attempt;
      const uptime = env.uptime || {}, errors = env.errors || {};
      const share = ((env.error_history || {}).requests || []).map((r, i) =>
        r ? (100 * env.error_history.errors_5xx[i]) / r : null);
      const lastDeploy = attempt ? [badge(attempt.outcome.replace(/_/g, " "), OUTCOME_LEVEL[attempt.outcome]),
        " ", el("code", {}, attempt.release), " · ", when(attempt.started_at),
        attempt.failed && attempt.reason ? el("div", { class: "muted small" }, attempt.reason) : null] : "none recorded";
      return el("article", { class: "card " + (level === "unknown" ? "" : level), "data-environment": env.name },
        el("div", { class: "card-head" },
          el("div", { class: "card-title" }, env.name, el("span", { class: "muted" }, env.domain)),
          el("div", {}, el("span", { class: "state " + level },
            !probe ? "NO DATA" : probe.ok ? "UP" : "DOWN"),
            probe ? el("span", { class: "muted small" },
              ` · ${probe.status_code || "no answer"} · ${probe.latency_ms === null ? "—" : Math.round(probe.latency_ms) + " ms"}`) : null)),
        env.maintenance ? el("div", { class: "state warning small" },
          "in maintenance: visitors get the 503 page (make maintenance ON=0 ends it)") : null,
        probe && !probe.ok ? el("div", { class: "state critical small" },
          `failing since ${ago(probe.failing_since || probe.at)}: ${probe.error || ""}`) : null,
        el("div", { class: "stats" }, uptimeStat("24 h", uptime["24h"]), uptimeStat("7 d", uptime["7d"]),
          uptimeStat("30 d", uptime["30d"])),
        el("div", { class: "stats" }, errorStat("5 min", errors["5m"]), errorStat("1 h", errors["1h"]),
          el("div", { class: "stat" }, el("div", { class: "label" }, "Probe"),
            el("div", { class: "value" }, probe ? when(probe.at) : "—"),
            el("div", { class: "sub" }, env.health_url))),
        el("dl", { class: "kv" },
          el("dt", {}, "Live release"), el("dd", {}, live ? [el("code", {}, live.release), " · since ", when(live.finished_at)] : "none recorded"),
          el("dt", {}, "Last deploy"), el("dd", {}, lastDeploy)),
        el("div", { class: "strip-label" }, el("span", {}, "availability, 24 h"), el("span", {}, "now")),
        availabilityStrip(env.availability),
        el("div", { class: "spark-label" }, el("span", {}, "probe latency, 6 h"), el("span", {}, "5xx share, 6 h")),
        el("div", { class: "sparks" },
          sparkline((env.latency_history || {}).values, { label: "probe latency", unit: " ms", floor: 50 }),
          sparkline(share, { label: "5xx share", unit: " %", kind: "errors", floor: 1 })));
    });
    fill("environment-cards", cards);
  }

  function serviceLevel(s) {
    if (s.state === "unknown") return "";
    if (s.configured && s.state !== "running") return "critical";
    if (s.health === "unhealthy") return "critical";
    if (s.health === "starting" || (s.memory_percent || 0) >= 90) return "warning";
    if (!s.configured && s.state !== "running") return "warning";
    return "";
  }

  function renderServices(services) {
    const healthLevel = { healthy: "ok", unhealthy: "critical", starting: "warning" };
    const rows = services.map((s) => {
      const level = serviceLevel(s);
      const stateLevel = s.state === "running" ? "ok" : s.state === "unknown" ? "" : "critical";
      const stateText = s.state + (s.exit_code !== null && s.exit_code !== undefined && s.state !== "running" ? ` (${s.exit_code})` : "")
        + (s.oom_killed ? " OOM" : "");
      return el("tr", { class: [level, s.configured ? "" : "extra"].join(" ").trim() || null },
        el("td", {}, el("strong", {}, s.name), s.environment ? el("span", { class: "env-tag" }, s.environment) : null,
          s.configured ? null : el("span", { class: "env-tag" }, "(not in config)")),
        el("td", {}, badge(stateText, stateLevel)),
        el("td", {}, s.health ? badge(s.health, healthLevel[s.health]) : el("span", { class: "muted" }, "—")),
        el("td", { class: "num" }, s.restarts === null || s.restarts === undefined ? "—" : String(s.restarts)),
        el("td", {}, memoryBar(s.memory_used_bytes, s.memory_limit_bytes, s.memory_percent)),
        el("td", {}, s.release ? el("code", {}, s.release) : null, s.release && s.container ? " · " : null,
          s.container ? el("span", { class: "muted small" }, s.container) : null),
        el("td", {}, s.started_at ? when(s.started_at) : "—"));
    });
    fill("service-rows", rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No container data yet.")));
  }

  function renderHost(data) {
    const host = data.host || {}, history = data.host_history || {};
    const level = (v, warn, crit) => (v >= crit ? "critical" : v >= warn ? "warning" : "");
    const tile = (label, value, cls, sub, series, options) => el("div", { class: "tile" },
      el("div", { class: "label" }, label), el("div", { class: "value " + cls }, value),
      el("div", { class: "sub" }, sub), series === null ? null : sparkline(series, Object.assign({ label }, options)));
    const cpu = host.cpu || {}, mem = host.memory || {}, swap = host.swap || {}, disk = host.disk || {};
    const load = host.load || [0, 0, 0];
    fill("host-sub", "last 6 h, 5-minute averages");
    fill("host-tiles",
      tile("CPU", pct(cpu.percent, 0), level(cpu.percent, 80, 95), `${cpu.count} core${cpu.count > 1 ? "s" : ""}`,
        history.cpu_percent, { max: 100, unit: " %" }),
      tile("Memory", pct(mem.percent, 0), level(mem.percent, 90, 97), `${mib(mem.used_bytes)} of ${mib(mem.total_bytes)}`,
        history.memory_percent, { max: 100, unit: " %" }),
      tile("Swap", swap.total_bytes ? pct(swap.percent, 0) : "off", level(swap.percent, 50, 80),
        swap.total_bytes ? `${mib(swap.used_bytes)} of ${mib(swap.total_bytes)}` : "no swap configured",
        history.swap_percent, { max: 100, unit: " %" }),
      tile("Disk", pct(disk.percent, 0), level(disk.percent, 85, 95), `${mib(disk.free_bytes)} free on ${disk.path}`,
        history.disk_percent, { max: 100, unit: " %" }),
      tile("Reboot", host.reboot_required ? "needed" : "not needed", host.reboot_required ? "warning" : "",
        host.reboot_required ? `since ${utc(host.reboot_required.since).slice(5, 16)} · ${(host.reboot_required.packages || []).join(", ") || "an update"}`
          : "running what is installed", null, {}),
      tile("Load", load[0].toFixed(2), level(load[0] / (cpu.count || 1), 1.5, 2), `5 min ${load[1].toFixed(2)} · 15 min ${load[2].toFixed(2)}`,
        history.load1, { floor: cpu.count || 1 }),
      integrityTile(host.integrity, tile));
  }

  // The nightly file-integrity check (dashboard/integrity.py), where the host runs one.
  function integrityTile(check, tile) {
    if (!check) return null;
    const when = check.at ? `${check.kind === "baseline" ? "baseline" : "checked"} ${utc(check.at).slice(5, 16)}` : "";
    if (check.outcome === "failed") return tile("Integrity", "failed", "warning", `${when} · journalctl -u aiia-integrity@check`, null, {});
    if (check.outcome === "changed") {
      return tile("Integrity", `${check.added + check.removed + check.changed} changed`, "warning",
        `${when} · ${check.added} added, ${check.removed} removed, ${check.changed} changed`, null, {});
    }
    return tile("Integrity", "unchanged", "", `${when} · ${check.entries} files`, null, {});
  }

  function renderCertificates(certificates) {
    const rows = certificates.map((c) => {
      const days = c.days_left;
      const failed = c.renewal_outcome === "renewal-failed";
      const level = c.error || c.issued === false || (days !== null && days < 7) ? "critical"
        : failed || (days !== null && days < 14) ? "warning" : "";
      return el("tr", { class: level || null },
        el("td", {}, el("strong", {}, c.domain)),
        el("td", { class: "num" }, c.error ? badge("error", "critical", c.error)
          : badge(days < 0 ? "expired" : Math.floor(days) + " d", level || "ok")),
        el("td", {}, c.error ? el("span", { class: "muted" }, c.error) : utc(c.not_after).slice(0, 10)),
        el("td", {}, c.issuer || "—", c.self_signed ? [" ", badge("self-signed", "")] : null,
          c.covers_domain === false ? [" ", badge("wrong name", "warning")] : null,
          c.issued === false ? [" ", badge("not yet issued", "critical", `last attempt ${utc(c.last_renewal_run)}`)] : null,
          failed ? [" ", badge("renewal failed", "warning", `last run ${utc(c.last_renewal_run)}`)] : null));
    });
    fill("certificate-rows", rows.length ? rows : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No certificates configured.")));
  }

  function jobCard(title, jobs, kind) {
    const last = jobs.last;
    if (!last) return el("article", { class: "card warning" }, el("div", { class: "card-title" }, title),
      el("p", { class: "muted" }, "None recorded yet."));
    const good = last.outcome === "succeeded" && (kind !== "backup" || last.verified === true);
    const level = last.outcome === "failed" || (kind === "backup" && !good && last.outcome !== "in_progress") ? "critical" : good ? "ok" : "warning";
    const details = kind === "backup"
      ? [el("dt", {}, "Size"), el("dd", {}, last.size_bytes ? mib(last.size_bytes) : "—"),
         el("dt", {}, "Databases"), el("dd", {}, (last.databases || []).join(", ") || "—"),
         el("dt", {}, "Verified"), el("dd", {}, last.verified ? badge("verified", "ok") : badge("not verified", "critical"))]
      : [el("dt", {}, "Database"), el("dd", {}, el("code", {}, last.database || "—")),
         el("dt", {}, "Restored"), el("dd", {}, `${last.tables ?? "—"} tables · ${last.rows ?? "—"} rows`)];
    const history = (jobs.history || []).slice().reverse();
    const dots = svg("svg", { class: "strip", viewBox: `0 0 ${Math.max(history.length, 1) * 14} 10`, preserveAspectRatio: "xMinYMid meet", role: "img", "aria-label": "recent runs" });
    history.forEach((run, i) => {
      const ok = run.outcome === "succeeded" && (kind !== "backup" || run.verified === true);
      const dot = svg("rect", { x: i * 14, y: 0, width: 10, height: 10, rx: 2, class: ok ? "up" : run.outcome === "in_progress" ? "none" : "down" });
      const t = svg("title"); t.textContent = `${utc(run.started_at)} · ${run.outcome}`; dot.append(t);
      dots.append(dot);
    });
    return el("article", { class: "card " + level },
      el("div", { class: "card-head" }, el("div", { class: "card-title" }, title),
        badge(last.outcome.replace(/_/g, " "), level === "critical" ? "critical" : level)),
      el("dl", { class: "kv" },
        el("dt", {}, "Last run"), el("dd", {}, when(last.started_at), el("span", { class: "muted" }, ` · ${utc(last.started_at)} · took ${duration(last.duration_s)}`)),
        details,
        last.reason ? [el("dt", {}, "Reason"), el("dd", { class: "state critical" }, last.reason)] : null,
        !good ? [el("dt", {}, "Last good"), el("dd", {}, jobs.last_good ? when(jobs.last_good.started_at) : "never")] : null),
      el("div", { class: "strip-label" }, el("span", {}, `last ${history.length} runs`), el("span", {}, "newest")), dots);
  }

  function renderBackups(data) {
    fill("backup-cards", jobCard("Backup", data.backups || {}, "backup"),
      jobCard("Restore test", data.restore_tests || {}, "restore"));
  }

  // Point-in-time recovery: static/pitr.js says what the cards hold, this lays them out.
  function renderPitr(data) {
    const cards = window.AiiaPitr.cards(data.pitr, data.alerts, { ago, utc, mib, duration });
    document.getElementById("pitr").classList.toggle("hidden", !cards.length);
    fill("pitr-cards", cards.map((c) => el("article", { class: "card " + c.level, "data-card": c.title },
      el("div", { class: "card-head" }, el("div", { class: "card-title" }, c.title), badge(c.badge, c.level)),
      c.note ? el("div", { class: "state small " + c.level }, c.note) : null,
      c.rows.length ? el("dl", { class: "kv" }, c.rows.flatMap((r) => [el("dt", {}, r.label),
        el("dd", { class: r.level ? "state " + r.level : null }, r.value)])) : null)));
  }

  function renderReleases(releases) {
    const rows = ((releases && releases.history) || []).map((r) => el("tr", { class: r.failed ? "warning" : null },
      el("td", {}, when(r.started_at), el("span", { class: "muted small" }, " · " + utc(r.started_at).slice(5, 16))),
      el("td", {}, r.environment),
      el("td", {}, el("code", {}, r.release)),
      el("td", {}, badge(r.outcome.replace(/_/g, " "), OUTCOME_LEVEL[r.outcome])),
      el("td", { class: "num" }, duration(r.duration_s)),
      el("td", {}, r.previous_release ? el("code", { class: "muted" }, r.previous_release) : "—"),
      el("td", { class: "wrap muted" }, r.reason || "")));
    fill("release-rows", rows.length ? rows : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No release recorded yet.")));
  }

  function renderAccess(access) {
    if (!access) {
      fill("access-rows", el("tr", {}, el("td", { colspan: 5, class: "muted" }, "Not collected on this host (no journal).")));
      return;
    }
    const events = [...(access.logins || []), ...(access.sudo || [])]
      .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)).slice(0, 30);
    const rows = events.map((e) => el("tr", { class: e.severity === "critical" ? "critical" : null },
      el("td", {}, when(e.at), el("span", { class: "muted small" }, " · " + utc(e.at).slice(5, 16))),
      el("td", {}, e.kind === "login" ? "SSH login" : "sudo",
        e.severity === "critical" ? el("span", {}, " ", badge("unexpected", "critical")) : null),
      el("td", {}, e.who),
      el("td", {}, e.kind === "login" ? el("span", {}, `${e.user} from ${e.address}`,
        e.new_address ? el("span", { class: "muted small" }, " · first from there") : null) : `${e.user} → ${e.run_as || "?"}`),
      el("td", { class: "wrap muted" }, e.problem || (e.kind === "sudo" ? e.command : `${e.method} ${e.key_type || ""}`))));
    fill("access-rows", rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No login or sudo in the journal yet.")));
  }

  function renderNotify(notifications) {
    const section = document.getElementById("notify");
    section.classList.toggle("hidden", !notifications);
    if (!notifications) return;
    const rows = (notifications.channels || []).map((c) => el("tr", { class: c.last_error ? "warning" : null },
      el("td", {}, c.name, el("span", { class: "muted small" }, " · " + c.kind)),
      el("td", {}, c.min_severity === "critical" ? "critical only" : "warnings and critical"),
      el("td", {}, c.last_ok_at ? when(c.last_ok_at) : "not yet"),
      el("td", { class: "num" }, c.pending + (c.dropped ? ` (${c.dropped} dropped)` : "")),
      el("td", { class: "wrap muted" }, c.last_error ? [c.last_error, c.next_attempt_at ? " · next try " : "",
        c.next_attempt_at ? when(c.next_attempt_at) : ""] : "")));
    const beat = notifications.heartbeat;
    if (beat) {
      rows.push(el("tr", { class: beat.last_error ? "warning" : null },
        el("td", {}, "heartbeat"), el("td", {}, beat.failing ? "failing (critical open)" : "alive"),
        el("td", {}, beat.last_ok_at ? when(beat.last_ok_at) : "not yet"), el("td", {}, ""),
        el("td", { class: "wrap muted" }, beat.last_error || "")));
    }
    fill("notify-rows", rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No channel.")));
    document.getElementById("notify-test").classList.toggle("hidden", !notifications.test_button);
    const test = notifications.test;
    if (test && !state.testAsked) {
      const failed = Object.entries(test.results || {}).filter(([, error]) => error);
      fill("notify-test-result", `Last test ${ago(test.at)}: `
        + (failed.length ? failed.map(([name, error]) => `${name} failed (${error})`).join("; ") : "every channel got it"));
    }
  }

  async function askTest() {
    state.testAsked = true;
    fill("notify-test-result", "asking…");
    try {
      // The header is what makes the request the page's own (the server refuses others).
      const response = await fetch("/api/notify-test", { method: "POST", cache: "no-store",
        credentials: "same-origin", headers: { "X-Aiia-Request": "notify-test" } });
      const answer = await response.json();
      fill("notify-test-result", answer.message || answer.error || ("server answered " + response.status));
    } catch (error) {
      fill("notify-test-result", "could not ask: " + error.message);
    }
    setTimeout(() => { state.testAsked = false; }, 65000);
  }

  function renderFooter(data) {
    const c = data.collector || {};
    fill("footer", `aiia-dashboard ${data.version} · collector took ${c.duration_ms === null || c.duration_ms === undefined ? "—" : Math.round(c.duration_ms) + " ms"}`
      + ` · ${(c.errors || []).length} collection error(s) · polling every ${data.poll_seconds} s`);
  }

  // ---- logs -------------------------------------------------------------------------------
  function pickLogService(data) {
    const select = document.getElementById("log-service");
    const services = data.log_services || [];
    if (select.options.length !== services.length || [...select.options].some((o, i) => o.value !== services[i])) {
      select.replaceChildren(...services.map((s) => el("option", { value: s }, s)));
    }
    if (!state.logPicked) {
      // First load: show the log of the first service that is in trouble, if there is one.
      const troubled = (data.alerts || []).map((a) => a.subject.split(" ")[0]).find((s) => services.includes(s));
      state.logService = troubled || services[0] || null;
      state.logPicked = true;
    }
    if (state.logService) select.value = state.logService;
    const info = (data.logs || {})[state.logService];
    const stamp = info ? info.collected_at : null;
    if (state.logService && stamp !== state.logStamp) loadLogs();
  }

  async function loadLogs() {
    const service = state.logService;
    if (!service) return;
    try {
      const response = await fetch("/api/logs?service=" + encodeURIComponent(service), { cache: "no-store", credentials: "same-origin" });
      const data = await response.json();
      if (service !== state.logService) return;
      state.logStamp = data.collected_at;
      fill("log-meta", `${data.source} · collected ${ago(data.collected_at)}${data.error ? " · " + data.error : ""}`);
      const pre = document.getElementById("log-lines");
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 30;
      pre.replaceChildren(...(data.lines.length ? data.lines : ["(no lines)"]).map((line) => {
        const cls = /\b(ERROR|CRITICAL|FATAL|Traceback|emerg|crit)\b|" 5\d\d /.test(line) ? "err"
          : /\b(WARN|WARNING|warn)\b/.test(line) ? "warn" : null;
        return el("span", { class: cls }, line + "\n");
      }));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    } catch (error) {
      fill("log-meta", "could not load logs: " + error.message);
    }
  }

  // ---- polling ------------------------------------------------------------------------------
  function render(data) {
    renderHeader(data);
    renderAlerts(data.alerts || []);
    renderEnvironments(data);
    renderServices(data.services || []);
    renderHost(data);
    renderCertificates(data.certificates || []);
    renderBackups(data);
    renderPitr(data);
    renderReleases(data.releases);
    renderAccess(data.host_access);
    renderNotify(data.notifications);
    renderFooter(data);
    pickLogService(data);
  }

  function showConnection(message) {
    const banner = document.getElementById("connection");
    banner.textContent = message || "";
    banner.classList.toggle("hidden", !message);
  }

  async function poll() {
    clearTimeout(state.timer);
    try {
      const response = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
      if (response.status === 401) throw new Error("credentials no longer accepted: reload the page");
      if (!response.ok) throw new Error("server answered " + response.status);
      const data = await response.json();
      state.last = data;
      state.lastOk = Date.now();
      state.pollSeconds = data.poll_seconds || 5;
      render(data);
      showConnection(null);
    } catch (error) {
      const since = state.lastOk ? ` The data below is from ${new Date(state.lastOk).toISOString().slice(11, 19)} UTC.` : "";
      showConnection(`Cannot reach the dashboard server (${error.message}); retrying.${since}`);
    } finally {
      if (!document.hidden) state.timer = setTimeout(poll, state.pollSeconds * 1000);
    }
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("notify-test").addEventListener("click", askTest);
    document.getElementById("log-service").addEventListener("change", (event) => {
      state.logService = event.target.value;
      state.logStamp = null;
      loadLogs();
    });
    poll();
  });
})();
