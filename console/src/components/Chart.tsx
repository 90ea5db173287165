/** A metric over time with uPlot: avg as a line, min and max as thin lines around it. */
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  /** The requested window, epoch seconds: the x axis spans it even when few buckets have data */
  from: number;
  to: number;
  times: number[]; // epoch seconds
  avg: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
}

export function Chart({ series, label }: { series: Series; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const plot = new uPlot(
      {
        width: Math.max(320, element.clientWidth),
        height: 260,
        scales: { x: { time: true, range: () => [series.from, series.to] } },
        legend: { show: true },
        series: [
          {},
          { label: "avg", stroke: "#1864ab", width: 2, points: { show: true, size: 6 } },
          { label: "min", stroke: "#74c0fc", width: 1 },
          { label: "max", stroke: "#e8590c", width: 1 },
        ],
        axes: [{}, { label }],
      },
      [series.times, series.avg, series.min, series.max],
      element,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(320, element.clientWidth), height: 260 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [series, label]);
  return <div ref={box} role="img" aria-label={`${label} over time`} data-testid="chart" />;
}
