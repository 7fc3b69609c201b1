/* BRIGHT dashboard charts: read the page's data URLs, fetch JSON, draw with Apache ECharts.
   Sets document.body.dataset.chartsReady = "1" and window.brightChartsReadyAt (ms since navigation
   start) when every chart has rendered: the browser tests measure the time to interactive with it. */
(function () {
  "use strict";
  var page = JSON.parse(document.getElementById("page-data").textContent);
  var L = page.labels;
  var colours = { consumption: "#0b5cad", production: "#d98e04", shared: "#1b8a4a", grid_in: "#7a2e8e", grid_out: "#8a8a8a", shared_given: "#6bbf59" };
  function chart(id) { var el = document.getElementById(id); el.textContent = ""; return echarts.init(el, null, { renderer: "canvas" }); }
  function getJSON(url) { return fetch(url, { credentials: "same-origin" }).then(function (r) { if (!r.ok) { throw new Error(url + ": " + r.status); } return r.json(); }); }
  function fail(id, err) { var el = document.getElementById(id); if (el) { el.textContent = String(err); } }
  var charts = [];
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });

  function energyChart(id, data, keys) {
    var c = chart(id); charts.push(c);
    var stepped = data.freq === "1D";
    c.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0, type: "scroll" },
      grid: { left: 55, right: 15, top: 40, bottom: 60 },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 10 }],
      xAxis: { type: "time" },
      yAxis: { type: "value", name: "kWh" },
      series: keys.filter(function (k) { return data.series[k]; }).map(function (k) {
        return { name: L[k] || k, type: stepped ? "bar" : "line", showSymbol: false, sampling: "lttb",
                 itemStyle: { color: colours[k] }, data: data.labels.map(function (t, i) { return [t, data.series[k][i]]; }) };
      })
    });
    return c;
  }

  function gauges(id, totals) {
    var c = chart(id); charts.push(c);
    function g(name, value, x) {
      return { type: "gauge", name: name, center: [x, "60%"], radius: "70%", min: 0, max: 100, splitNumber: 5,
               progress: { show: true, width: 10 }, axisLine: { lineStyle: { width: 10 } }, pointer: { show: false },
               axisLabel: { show: false }, splitLine: { show: false }, axisTick: { show: false },
               title: { offsetCenter: [0, "75%"], fontSize: 12 }, detail: { valueAnimation: false, formatter: "{value} %", fontSize: 18, offsetCenter: [0, "0%"] },
               data: [{ value: value === null ? 0 : Math.round(value * 1000) / 10, name: name }] };
    }
    c.setOption({ animation: false, series: [g(L.self_sufficiency, totals.self_sufficiency, "25%"), g(L.self_consumption, totals.self_consumption_rate, "75%")] });
    return c;
  }

  function sankey(id, flows) {
    var c = chart(id); charts.push(c);
    var names = { PV: L.PV, injection: L.injection, own_use: L.own_use, shared: L.shared, grid_out: L.grid_out, grid_in: L.grid_in, consumption: L.consumption_node };
    c.setOption({
      animation: false,
      tooltip: { trigger: "item", valueFormatter: function (v) { return Math.round(v).toLocaleString() + " kWh"; } },
      series: [{ type: "sankey", left: 10, right: 150, emphasis: { focus: "adjacency" }, nodeAlign: "justify",
                 data: flows.nodes.map(function (n) { return { name: n.name, label: { formatter: names[n.name] || n.name } }; }),
                 links: flows.links, lineStyle: { color: "gradient", curveness: 0.5 } }]
    });
    return c;
  }

  function compare(id, data) {
    var c = chart(id); charts.push(c);
    var series = [{ name: L.consumption, type: "line", showSymbol: false, itemStyle: { color: colours.consumption }, data: data.series.consumption }];
    if (data.previous) {
      series.push({ name: L.consumption + " (" + L.previous + ")", type: "line", showSymbol: false, lineStyle: { type: "dashed" }, itemStyle: { color: "#5b6b7a" }, data: data.previous.series.consumption });
    }
    c.setOption({ animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 55, right: 15, top: 35, bottom: 30 },
                  xAxis: { type: "category", data: data.labels.map(function (_, i) { return i + 1; }) }, yAxis: { type: "value", name: "kWh" }, series: series });
    return c;
  }

  function ready() {
    document.body.dataset.chartsReady = "1";
    window.brightChartsReadyAt = performance.now();
  }

  if (page.kind === "community") {
    Promise.all([getJSON(page.energy), getJSON(page.flows)]).then(function (res) {
      var energy = res[0], flows = res[1];
      energyChart("chart-energy", energy, ["consumption", "production", "shared", "grid_in", "grid_out"]);
      sankey("chart-flow", flows);
      if (energy.totals) { gauges("chart-gauges", energy.totals); }
      compare("chart-compare", energy);
      ready();
    }).catch(function (err) { fail("chart-energy", err); document.body.dataset.chartsReady = "error"; });
  } else if (page.kind === "member") {
    getJSON(page.energy).then(function (energy) {
      energyChart("chart-energy", energy, ["consumption", "production", "shared", "shared_given"]);
      ready();
    }).catch(function (err) { fail("chart-energy", err); document.body.dataset.chartsReady = "error"; });
  }
})();
