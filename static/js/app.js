// Charts: any <canvas data-chart="id-of-json-script"> is drawn with Chart.js, also after htmx swaps.
(function () {
  const palette = ["#5b2fd6", "#1f9d8b", "#f08c00", "#d6336c", "#2a5bd7", "#6b7280", "#94d82d", "#845ef7"];
  function draw(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas._chart) { canvas._chart.destroy(); }
      const source = document.getElementById(canvas.dataset.chart);
      if (!source || typeof Chart === "undefined") { return; }
      const config = JSON.parse(source.textContent);
      (config.data.datasets || []).forEach(function (ds, i) {
        const color = ds.color || palette[i % palette.length];
        ds.backgroundColor = ds.backgroundColor || (config.type === "line" ? color + "22" : (config.type === "doughnut" ? palette : color));
        ds.borderColor = ds.borderColor || (config.type === "doughnut" ? "#fff" : color);
        ds.borderWidth = ds.borderWidth || (config.type === "line" ? 2 : 1);
        ds.pointRadius = ds.pointRadius === undefined ? 0 : ds.pointRadius;
        ds.tension = 0.25;
      });
      config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: (config.data.datasets || []).length > 1 || config.type === "doughnut", position: "bottom" } } }, config.options || {});
      // Points that carry a "name" (an item on a map) say it in their tooltip instead of bare coordinates.
      const named = (config.data.datasets || []).some(function (ds) {
        return (ds.data || []).some(function (p) { return p && typeof p === "object" && p.name; });
      });
      if (named) {
        config.options.plugins = config.options.plugins || {};
        config.options.plugins.tooltip = Object.assign({ callbacks: { label: function (ctx) {
          return ctx.raw && ctx.raw.name ? ctx.raw.name + " (" + ctx.dataset.label + ")" : ctx.dataset.label + ": " + ctx.formattedValue;
        } } }, config.options.plugins.tooltip || {});
      }
      canvas._chart = new Chart(canvas, config);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (e) { draw(e.target); });
  // A part of a form that htmx redraws (data-keep-edits) keeps what the operator is typing. Its requests
  // replace one another (hx-sync), so the last edit always wins; and when a redraw lands while the focused
  // field holds text the server has not seen, the text and the caret move to the redrawn field and a change
  // is sent, so that text is counted too.
  let unsent = null;
  document.addEventListener("htmx:beforeSwap", function (e) {
    const target = e.detail.target, field = document.activeElement;
    unsent = null;
    if (!target || !target.hasAttribute("data-keep-edits") || !field || !field.name || !target.contains(field)) { return; }
    if (!("defaultValue" in field) || field.value === field.defaultValue) { return; }
    let start = null, end = null;
    try { start = field.selectionStart; end = field.selectionEnd; } catch (err) { /* number inputs have no caret */ }
    unsent = { target: target, name: field.name, value: field.value, start: start, end: end };
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    const kept = unsent;
    if (!kept || e.detail.target !== kept.target) { return; }
    unsent = null;
    const field = kept.target.querySelector('[name="' + CSS.escape(kept.name) + '"]');
    if (!field || !("defaultValue" in field) || field.value === kept.value) { return; }
    field.value = kept.value;
    field.focus();
    if (kept.start !== null) { try { field.setSelectionRange(kept.start, kept.end); } catch (err) { /* no caret */ } }
    field.dispatchEvent(new Event("change", { bubbles: true }));
  });
  // Destructive actions ask first: <form data-confirm="Revoke this token?">
  document.addEventListener("submit", function (e) {
    const msg = e.target.dataset && e.target.dataset.confirm;
    if (msg && !window.confirm(msg)) { e.preventDefault(); }
  }, true);
})();
