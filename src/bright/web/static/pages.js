/* BRIGHT dashboard: charts of the analysis, network and engagement pages (Apache ECharts).
   The data are in the page (script#page-data): nothing more is fetched. Sets
   document.body.dataset.chartsReady = "1" and window.brightChartsReadyAt when every chart is drawn. */
(function () {
  "use strict";
  var page = JSON.parse(document.getElementById("page-data").textContent);
  var L = page.labels || {};
  var charts = [];
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  function chart(id) { var el = document.getElementById(id); el.textContent = ""; var c = echarts.init(el, null, { renderer: "canvas" }); charts.push(c); return c; }
  function ready() { document.body.dataset.chartsReady = "1"; window.brightChartsReadyAt = performance.now(); }
  function pairs(times, values) { return times.map(function (t, i) { return [t, values[i]]; }); }
  var base = { animation: false, tooltip: { trigger: "axis" }, legend: { top: 0, type: "scroll" }, grid: { left: 60, right: 20, top: 40, bottom: 40 } };
  function opts(extra) { var o = {}; Object.keys(base).forEach(function (k) { o[k] = base[k]; }); Object.keys(extra).forEach(function (k) { o[k] = extra[k]; }); return o; }

  function forecast() {
    page.quantities.forEach(function (q, n) {
      var s = page.figures[n];
      var width = s.q90.map(function (hi, i) { return hi === null || s.q10[i] === null ? null : hi - s.q10[i]; });
      var series = [
        { name: "q10", type: "line", stack: "band", data: pairs(page.times, s.q10), lineStyle: { opacity: 0 }, showSymbol: false, tooltip: { show: false } },
        { name: L.band, type: "line", stack: "band", data: pairs(page.times, width), lineStyle: { opacity: 0 }, showSymbol: false, areaStyle: { color: "rgba(11,92,173,0.2)" } },
        { name: L.q50, type: "line", data: pairs(page.times, s.q50), showSymbol: false, itemStyle: { color: "#0b5cad" } }
      ];
      if (s.measured) { series.push({ name: L.measured, type: "line", data: pairs(page.times, s.measured), showSymbol: false, itemStyle: { color: "#1b1f24" }, lineStyle: { type: "dashed" } }); }
      chart("chart-" + q).setOption(opts({ legend: { top: 0, data: [L.band, L.q50, L.measured] }, xAxis: { type: "time" }, yAxis: { type: "value", name: "kWh / 15 min" }, series: series }));
    });
  }

  function flexibility() {
    var c = page.chart;
    var flows = ["import_kw", "export_kw", "shared_kw"].filter(function (k) { return c.flows[k]; }).map(function (k) {
      return { name: L[k] || k, type: "line", step: "start", showSymbol: false, data: pairs(c.time, c.flows[k]) };
    });
    var price = Object.keys(c.prices)[0];
    if (price) { flows.push({ name: L.price + " (" + price + ")", type: "line", yAxisIndex: 1, step: "start", showSymbol: false, lineStyle: { type: "dotted" }, data: pairs(c.time, c.prices[price]) }); }
    chart("chart-flows").setOption(opts({ xAxis: { type: "time" }, yAxis: [{ type: "value", name: "kW" }, { type: "value", name: "EUR/kWh" }], series: flows }));
    var devs = Object.keys(c.devices).map(function (d) {
      return { name: d.split(":").pop(), type: "line", step: "start", showSymbol: false, data: pairs(c.time, c.devices[d]) };
    });
    chart("chart-devices").setOption(opts({ xAxis: { type: "time" }, yAxis: { type: "value", name: "kW (+ in, - out)" }, series: devs }));
  }

  function bars(id, names, a, b, la, lb, unit) {
    chart(id).setOption(opts({ tooltip: { trigger: "axis", axisPointer: { type: "shadow" } }, grid: { left: 60, right: 20, top: 40, bottom: 90 },
      xAxis: { type: "category", data: names, axisLabel: { rotate: 40, interval: 0 } }, yAxis: { type: "value", name: unit },
      series: [{ name: la, type: "bar", data: a, itemStyle: { color: "#0b5cad" } }, { name: lb, type: "bar", data: b, itemStyle: { color: "#d98e04" } }] }));
  }

  function network() {
    var m = page.map;
    var pts = m.points;
    var series = [
      { name: L.schools, type: "scatter", symbolSize: 3, itemStyle: { color: "#c9d1d9" }, data: m.background, silent: true },
      { name: L.cards, type: "scatter", data: pts.filter(function (p) { return !p.found; }).map(function (p) { return { name: p.name, value: p.value }; }),
        symbolSize: function (v) { return 6 + Math.sqrt(v[2] || 1); }, itemStyle: { color: "#0b5cad" } },
      { name: L.found, type: "effectScatter", data: pts.filter(function (p) { return p.found; }).map(function (p) { return { name: p.name, value: p.value }; }),
        symbolSize: function (v) { return 8 + Math.sqrt(v[2] || 1); }, itemStyle: { color: "#a4161a" } }
    ];
    var xs = m.background.map(function (p) { return p[0]; }).concat(pts.map(function (p) { return p.value[0]; }));
    var ys = m.background.map(function (p) { return p[1]; }).concat(pts.map(function (p) { return p.value[1]; }));
    var pad = 0.01;
    chart("chart-map").setOption({ animation: false, legend: { top: 0 },
      tooltip: { trigger: "item", formatter: function (p) { return p.name ? p.name : ""; } },
      grid: { left: 10, right: 10, top: 30, bottom: 10 },
      xAxis: { type: "value", show: false, scale: true, min: Math.min.apply(null, xs) - pad, max: Math.max.apply(null, xs) + pad },
      yAxis: { type: "value", show: false, scale: true, min: Math.min.apply(null, ys) - pad, max: Math.max.apply(null, ys) + pad },
      dataZoom: [{ type: "inside", xAxisIndex: 0 }, { type: "inside", yAxisIndex: 0 }],
      series: series });
    /* keep the aspect: one unit of x (lon * cos(lat)) as long as one of y (lat) */
    var el = document.getElementById("chart-map");
    var w = Math.max.apply(null, xs) - Math.min.apply(null, xs) + 2 * pad, h = Math.max.apply(null, ys) - Math.min.apply(null, ys) + 2 * pad;
    el.style.height = Math.min(700, Math.max(260, el.clientWidth * h / w + 40)) + "px";
    charts[0].resize();
  }

  function engagement() {
    var c = page.chart;
    chart("chart-mix").setOption({ animation: false, tooltip: { trigger: "item" },
      series: [{ type: "pie", radius: ["35%", "70%"], data: c.names.map(function (n, i) { return { name: n, value: c.members[i] }; }), label: { formatter: "{b}: {c}" } }] });
  }

  function mobility() {
    [["duration", "chart-duration"], ["daily_profile", "chart-profile"]].forEach(function (pair) {
      var d = page.plots[pair[0]];
      var series = Object.keys(d.series).map(function (name) {
        return { name: name, type: "line", showSymbol: false, data: d.x.map(function (x, i) { return [x, d.series[name][i]]; }) };
      });
      chart(pair[1]).setOption(opts({ xAxis: { type: pair[0] === "duration" ? "value" : "category", name: d.x_label, nameLocation: "middle", nameGap: 25 },
        yAxis: { type: "value", name: d.unit || "kW" }, series: series }));
    });
  }

  try {
    if (page.kind === "forecast") { forecast(); }
    else if (page.kind === "flexibility") { flexibility(); }
    else if (page.kind === "fairness") { bars("chart-fairness", page.chart.members, page.chart.shapley, page.chart.settled, L.shapley, L.settled, "EUR"); }
    else if (page.kind === "sharing_key") { bars("chart-preview", page.chart.members, page.chart.current, page.chart.proposed, L.current, L.proposed, "kWh"); }
    else if (page.kind === "network") { network(); }
    else if (page.kind === "engagement") { engagement(); }
    else if (page.kind === "mobility") { mobility(); }
    ready();
  } catch (err) {
    document.body.dataset.chartsReady = "error";
    var first = document.querySelector(".plot"); if (first) { first.textContent = String(err); }
  }
})();
