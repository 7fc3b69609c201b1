// The city twin page: offtake, injection and shared energy per community as grouped bars (ECharts).
(function () {
  "use strict";
  function draw() {
    var holder = document.getElementById("chart-city");
    var data = JSON.parse(document.getElementById("city-data").textContent);
    if (!holder || !window.echarts) { return; }
    if (!data.names.length) { holder.textContent = holder.dataset.empty || ""; return; }
    holder.textContent = "";
    var chart = window.echarts.init(holder, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 20, right: 20, top: 40, bottom: 10, containLabel: true },
      xAxis: {
        type: "category", data: data.names,
        axisLabel: { rotate: 30, interval: 0, formatter: function (name) { return name.length > 26 ? name.slice(0, 25) + "…" : name; } }
      },
      yAxis: { type: "value", name: "kWh" },
      series: data.series.map(function (s) {
        return { name: s.name, type: "bar", data: s.values.map(function (v) { return v === null ? null : Math.round(v * 10) / 10; }) };
      })
    });
    holder.dataset.drawn = "1";
    window.addEventListener("resize", function () { chart.resize(); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
