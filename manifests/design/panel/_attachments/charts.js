/* The panel's charts, drawn as SVG: horizontal bars (a count per name) and a time series (a count per
 * day). Every figure is written beside its mark, so a reader gets the numbers without hovering, and
 * every mark carries data-key and data-value for scripts that read the page. */
(function (global) {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const number = new Intl.NumberFormat("en-US");
  const dayFormat = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  const longDayFormat = new Intl.DateTimeFormat("en-US",
    { weekday: "short", year: "numeric", month: "short", day: "numeric", timeZone: "UTC" });

  function node(name, attributes, parent) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
    if (parent) parent.appendChild(element);
    return element;
  }

  function text(parent, attributes, content) {
    const element = node("text", attributes, parent);
    element.textContent = content;
    return element;
  }

  function tooltip(parent, content) {
    node("title", {}, parent).textContent = content;
  }

  function shorten(label, characters) {
    return label.length > characters ? label.slice(0, characters - 1) + "…" : label;
  }

  // Drawn at the container's width in CSS pixels, so text keeps its size whatever the layout
  // (the panel draws again when the window is resized).
  function chart(container, title, height, className) {
    const width = Math.max(300, Math.round(container.getBoundingClientRect().width) || 640);
    const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": title,
      class: `chart ${className}` });
    return { svg, width };
  }

  // The smallest "round" step (1, 2 or 5 times a power of ten) that splits max into at most `lines` steps.
  function gridStep(max, lines) {
    const rough = Math.max(1, max / lines);
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    return [1, 2, 5, 10].map((factor) => factor * power).find((step) => step >= rough);
  }

  /* rows: [{key, value, label?, muted?}], drawn in the order given. */
  function bars(container, rows, title) {
    const rowHeight = 30;
    const valueWidth = 72;
    const height = Math.max(1, rows.length) * rowHeight + 6;
    const { svg, width } = chart(container, title, height, "bars");
    const labelWidth = Math.min(210, width * 0.38);
    const max = Math.max(1, ...rows.map((row) => row.value));
    rows.forEach((row, index) => {
      const label = row.label || row.key;
      const middle = index * rowHeight + rowHeight / 2 + 3;
      const group = node("g", { class: row.muted ? "bar muted" : "bar", "data-key": row.key,
        "data-value": String(row.value) }, svg);
      tooltip(group, `${label}: ${number.format(row.value)}`);
      text(group, { x: labelWidth - 12, y: middle, class: "label", "text-anchor": "end",
        "dominant-baseline": "central" }, shorten(label, Math.floor(labelWidth / 7.5)));
      const length = Math.max(3, (width - labelWidth - valueWidth) * row.value / max);
      node("rect", { x: labelWidth, y: middle - 10, width: length.toFixed(1), height: 20, rx: 4 }, group);
      text(group, { x: labelWidth + length + 8, y: middle, class: "value", "dominant-baseline": "central" },
        number.format(row.value));
    });
    container.replaceChildren(svg);
  }

  /* series: [{day: "YYYY-MM-DD", value}], one entry per consecutive day. */
  function days(container, series, title) {
    const height = 230;
    const left = 46;
    const right = 10;
    const top = 22;
    const bottom = 30;
    const { svg, width } = chart(container, title, height, "days");
    const plotHeight = height - top - bottom;
    const peak = Math.max(1, ...series.map((point) => point.value));
    const step = gridStep(peak, 4);
    const max = Math.ceil(peak / step) * step;
    const y = (value) => top + plotHeight - plotHeight * value / max;

    const grid = node("g", { class: "grid" }, svg);
    for (let value = 0; value <= max; value += step) {
      node("line", { x1: left, x2: width - right, y1: y(value), y2: y(value) }, grid);
      text(grid, { x: left - 8, y: y(value), "text-anchor": "end", "dominant-baseline": "central" },
        number.format(value));
    }

    const slot = (width - left - right) / Math.max(1, series.length);
    const barWidth = Math.max(2, slot * 0.72);
    const labelEvery = Math.ceil(series.length / Math.max(2, Math.floor(width / 70)));
    const showValues = series.length <= 45;
    series.forEach((point, index) => {
      const x = left + slot * index + (slot - barWidth) / 2;
      const date = new Date(point.day + "T00:00:00Z");
      const group = node("g", { class: point.value ? "bar" : "bar empty", "data-key": point.day,
        "data-value": String(point.value) }, svg);
      tooltip(group, `${longDayFormat.format(date)}: ${number.format(point.value)}`);
      const barHeight = Math.max(point.value ? 2 : 0, top + plotHeight - y(point.value));
      node("rect", { x: x.toFixed(1), y: (top + plotHeight - barHeight).toFixed(1), width: barWidth.toFixed(1),
        height: barHeight.toFixed(1), rx: Math.min(3, barWidth / 3).toFixed(1) }, group);
      if (showValues && point.value) {
        text(group, { x: (x + barWidth / 2).toFixed(1), y: (top + plotHeight - barHeight - 6).toFixed(1),
          class: "value", "text-anchor": "middle" }, number.format(point.value));
      }
      if ((series.length - 1 - index) % labelEvery === 0) {
        text(svg, { x: (x + barWidth / 2).toFixed(1), y: height - 10, class: "axis", "text-anchor": "middle" },
          dayFormat.format(date));
      }
    });
    container.replaceChildren(svg);
  }

  global.PanelCharts = { bars, days, number };
})(window);
