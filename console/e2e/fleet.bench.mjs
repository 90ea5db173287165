// The fleet page with a large fleet in Chromium: how fast the first rows show, that only pages
// are fetched (never the whole fleet), how many rows the DOM holds (virtualised), how long each
// further page takes while scrolling, and the frame times of continuous scrolling.
// Env: CONSOLE_URL, TENANT, CHROMIUM, SCROLL_PAGES (default 20). Prints "RESULT {json}".
import { chromium } from "playwright-core";

const CONSOLE = process.env.CONSOLE_URL;
const PAGES = Number(process.env.SCROLL_PAGES ?? 20);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.setDefaultTimeout(60_000);
  const deviceRequests = [];
  page.on("requestfinished", async (request) => {
    if (request.url().includes("/api/v1/devices?")) {
      const timing = request.timing();
      deviceRequests.push(timing.responseEnd - timing.requestStart);
    }
  });
  await page.goto(CONSOLE);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.fill("#tenant", process.env.TENANT ?? "bench");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "Fleet" }).waitFor();
  await page.getByTestId("device-row").first().waitFor();

  // a full page load of /fleet (signed in: the session is restored, no query cache)
  deviceRequests.length = 0;
  const started = Date.now();
  await page.goto(`${CONSOLE}/fleet`);
  await page.getByTestId("device-row").first().waitFor();
  result["first rows ms"] = Date.now() - started;
  const loaded = async () => Number((await page.getByTestId("loaded-count").innerText()).split(" ")[0]);
  result["rows loaded initially"] = await loaded();
  await page.waitForTimeout(500);
  result["device page requests initially"] = deviceRequests.length;
  result["DOM rows initially"] = await page.getByTestId("device-row").count();

  const scroller = page.getByTestId("fleet-scroller");
  const pageTimes = [];
  for (let i = 0; i < PAGES; i += 1) {
    const before = await loaded();
    const t0 = Date.now();
    await scroller.evaluate((el) => el.scrollTo({ top: el.scrollHeight }));
    await page.waitForFunction(
      (n) => Number(document.querySelector('[data-testid="loaded-count"]').textContent.split(" ")[0]) > n,
      before,
    );
    pageTimes.push(Date.now() - t0);
  }
  pageTimes.sort((a, b) => a - b);
  result["scroll-to-next-page p50 ms"] = pageTimes[Math.floor(pageTimes.length / 2)];
  result["scroll-to-next-page max ms"] = pageTimes[pageTimes.length - 1];
  result["rows loaded after scrolling"] = await loaded();
  result["DOM rows after scrolling"] = await page.getByTestId("device-row").count();
  const api = [...deviceRequests].sort((a, b) => a - b);
  result["API page (100 devices) p50 ms"] = api[Math.floor(api.length / 2)];
  result["API page (100 devices) max ms"] = api[api.length - 1];

  // continuous scrolling through what is loaded: frame times
  const frames = await scroller.evaluate(async (el) => {
    el.scrollTop = 0;
    const deltas = [];
    let last = performance.now();
    const end = last + 3000;
    await new Promise((resolve) => {
      const tick = (now) => {
        deltas.push(now - last);
        last = now;
        el.scrollTop += 120;
        if (now < end) requestAnimationFrame(tick);
        else resolve();
      };
      requestAnimationFrame(tick);
    });
    return deltas.slice(1);
  });
  frames.sort((a, b) => a - b);
  result["scroll frames"] = frames.length;
  result["scroll frame p95 ms"] = +frames[Math.floor(frames.length * 0.95)].toFixed(1);
  result["scroll frames over 50 ms"] = frames.filter((f) => f > 50).length;
} catch (error) {
  result.error = String(error?.stack ?? error);
} finally {
  await browser.close();
  console.log(`RESULT ${JSON.stringify(result)}`);
}
