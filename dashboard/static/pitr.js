// The point-in-time recovery cards (issue #30): what the status's `pitr` section says, as
// plain data (title, level, rows of label/value/level) that app.js lays out with the DOM.
// No DOM here, so that tests/unit/dashboard/test_dashboard_pitr_page.py runs it in Node.
// A row's level comes from the alert it belongs to (dashboard/pitr.py decides, once).
"use strict";

(function (root) {
  // Alert subject (dashboard/pitr.py) → the rows it colours.
  const SUBJECT = { archive: "WAL archive", offHost: "off-host copy", base: "base backup",
                    chain: "WAL chain", drill: "PITR drill", tick: "PITR tick", file: "pitr.json" };

  function cards(pitr, alerts, fmt) {
    if (!pitr) return [];
    const level = {};
    for (const a of alerts || []) {
      if (a.area === "pitr" && level[a.subject] !== "critical") level[a.subject] = a.severity;
    }
    const state = pitr.state;
    const found = [];
    if (pitr.error) {
      found.push({ title: "WAL archive", level: "critical", badge: "unreadable", rows: [],
                   note: pitr.error });
    } else if (!state || !state.enabled) {
      found.push({ title: "WAL archive", level: "", badge: "off", rows: [],
                   note: state ? "pitr.json says PITR is disabled." : "No pitr.json: PITR is off on this host or has not ticked yet." });
    } else {
      found.push(archiveCard(state, level, fmt), windowCard(state, level, fmt));
    }
    found.push(drillCard(pitr.drills || {}, state, level, fmt));
    return found;
  }

  function worst(levels) {
    return levels.includes("critical") ? "critical" : levels.includes("warning") ? "warning" : "ok";
  }
  function at(text, fmt) { return text ? `${fmt.ago(text)} · ${fmt.utc(text)}` : "never"; }

  function archiveCard(state, level, fmt) {
    const a = state.archive, off = state.off_host;
    const behind = level[SUBJECT.archive] || "";
    const rows = [
      { label: "Last archived", value: a.last_archived_at ? `${at(a.last_archived_at, fmt)} · ${a.last_archived_wal}` : "never", level: behind },
      { label: "Waiting", value: a.waiting_segments ? `${a.waiting_segments} segment(s), the oldest since ${at(a.oldest_waiting_since, fmt)}` : "nothing waits", level: behind },
      { label: "Last failure", value: a.last_failed_at ? `${at(a.last_failed_at, fmt)} · ${a.last_failed_wal || "segment not named"}` : "none", level: a.last_failed_at ? behind : "" },
      off.configured
        ? { label: "Off-host copy", value: `last shipped ${at(off.last_shipped_at, fmt)} · ${off.pending ?? "?"} pending`, level: level[SUBJECT.offHost] || "" }
        : { label: "Off-host copy", value: "not configured: a lost host loses the archive", level: "" },
      { label: "Archive size", value: fmt.mib(state.archive_bytes), level: "" },
    ];
    const tick = level[SUBJECT.tick];
    return { title: "WAL archive", level: worst([behind, level[SUBJECT.offHost] || "", tick || ""]),
             badge: tick ? "stale" : behind ? "behind" : "archiving", rows,
             note: tick ? `pitr.json last rewritten ${at(state.updated_at, fmt)}: these values are that old.` : "" };
  }

  function windowCard(state, level, fmt) {
    const w = state.window, base = state.base, gaps = state.gaps || [];
    const chain = level[SUBJECT.chain] || "", baseLevel = level[SUBJECT.base] || "";
    const rpo = state.rpo_seconds === null ? "" : ` · RPO target ${fmt.duration(state.rpo_seconds)}`;
    const rows = [
      { label: "From", value: w.from ? fmt.utc(w.from) : "—", level: "" },
      { label: "To", value: w.to ? `${fmt.utc(w.to)} (${fmt.ago(w.to)})` : "—", level: "" },
      { label: "Target", value: `${state.window_days ?? "?"} days${rpo}`, level: "" },
      { label: "Last base backup", value: base.last_at ? `${at(base.last_at, fmt)} · ${base.last_id}` : "none yet", level: baseLevel },
      { label: "Base backups", value: `${base.count ?? "?"} · ${fmt.mib(base.bytes)}`, level: "" },
      { label: "Gaps", value: gaps.length ? gaps.map((g) => `${fmt.utc(g.at)} ${g.wal}: ${g.reason}`).join("; ") : "none", level: chain },
    ];
    if (state.gap_count > gaps.length) rows[rows.length - 1].value += ` (and ${state.gap_count - gaps.length} older)`;
    return { title: "Restore window", level: worst([chain, baseLevel]), badge: chain ? "chain broken" : "restorable",
             rows, note: chain ? "No restore reaches past the newest gap until the next base backup." : "" };
  }

  function drillCard(drills, state, level, fmt) {
    const last = drills.last, good = drills.last_good;
    const alert = level[SUBJECT.drill] || "";
    if (!last) return { title: "PITR drill", level: alert || (drills.error ? "warning" : ""), badge: "none yet", rows: [],
                        note: drills.error || "No PITR drill recorded yet." };
    const target = state && state.rpo_seconds;
    const rpo = last.rpo_seconds === null || last.rpo_seconds === undefined ? "—"
      : `${last.rpo_seconds.toFixed(1)} s` + (target ? ` (target ${target} s)` : "");
    const rows = [
      { label: "Last run", value: `${at(last.started_at, fmt)} · took ${fmt.duration(last.duration_s)}`, level: alert },
      { label: "Restored to", value: last.target_time ? fmt.utc(last.target_time) : "—", level: "" },
      { label: "Achieved RPO", value: rpo, level: target && last.rpo_seconds > target ? "warning" : "" },
      { label: "Restore time", value: fmt.duration(last.restore_seconds), level: "" },
    ];
    if (last.reason) rows.push({ label: "Reason", value: last.reason, level: "critical" });
    if (last.outcome !== "succeeded") rows.push({ label: "Last good", value: good ? at(good.started_at, fmt) : "never", level: "" });
    return { title: "PITR drill", level: alert || (last.outcome === "succeeded" ? "ok" : "warning"),
             badge: last.outcome.replace(/_/g, " "), rows, note: drills.error || "" };
  }

  const api = { cards, SUBJECT };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.AiiaPitr = api;
})(this);
