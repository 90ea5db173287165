// The console end to end in Debian's Chromium (playwright-core, no browser download), driven by
// tests/e2e/test_console_browser.py against a private dev stack. Speaks to the test on stdio:
//   stdout "NEED_BREACH {json}"  -> the test publishes breaching readings as that device
//   stdout "ALERT_SEEN"          -> the test stops publishing
//   stdout "RESULT {json}"       -> what the test asserts on (axe violations, screenshots, ...)
// Env: CONSOLE_URL, ARTIFACTS (screenshots), WEBHOOK_URL, CHROMIUM (default /usr/bin/chromium).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const CONSOLE = process.env.CONSOLE_URL;
const ARTIFACTS = process.env.ARTIFACTS ?? "e2e-artifacts";
const WEBHOOK_URL = process.env.WEBHOOK_URL;
const TIMEOUT = 30_000;
mkdirSync(ARTIFACTS, { recursive: true });

const result = { steps: [], screenshots: [], axe: {}, refreshGrants: 0, apiErrors: [], viewer: {}, globex: {}, noTenant: null };
const lines = createInterface({ input: process.stdin });
const waiters = [];
lines.on("line", (line) => waiters.shift()?.(line));
const nextLine = () => new Promise((resolve) => waiters.push(resolve));
const started = Date.now();
const step = (name) => {
  result.steps.push(name);
  console.error(`e2e: ${((Date.now() - started) / 1000).toFixed(1)}s ${name}`);
};

async function shoot(page, name) {
  // not "networkidle": the live event stream keeps a request open for good
  await page.locator('[aria-label^="Loading"]').first().waitFor({ state: "detached" }).catch(() => {});
  await page.waitForTimeout(400);
  const path = `${ARTIFACTS}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const outcome = await window.axe.run(document, { resultTypes: ["violations"] });
    return outcome.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  result.axe[name] = violations;
}

async function signIn(browser, { tenant, roles, username }) {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("response", (response) => {
    if (response.url().includes("/api/v1/") && response.status() >= 500) result.apiErrors.push(`${response.status()} ${response.url()}`);
  });
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/protocol/openid-connect/token") && (request.postData() ?? "").includes("grant_type=refresh_token")) {
      result.refreshGrants += 1;
    }
  });
  await page.goto(CONSOLE);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/openid-connect\/auth/);
  await page.fill("#username", username);
  await page.fill("#tenant", tenant);
  for (const box of await page.locator('input[name="role"]').all()) {
    const value = await box.getAttribute("value");
    if (roles.includes(value)) await box.check();
    else await box.uncheck();
  }
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL((url) => url.origin === new URL(CONSOLE).origin && !url.pathname.startsWith("/callback"));
  return { context, page };
}

async function go(page, path, heading) {
  await page.getByRole("navigation").getByRole("link", { name: heading }).click();
  await page.waitForURL(`**${path}`);
  await page.getByRole("heading", { level: 1, name: heading }).waitFor();
}

async function admin(browser) {
  step("admin signs in with PKCE");
  const { context, page } = await signIn(browser, { tenant: "acme", roles: ["tenant-admin"], username: "alice" });
  await page.getByRole("heading", { level: 1, name: "Fleet" }).waitFor();
  await page.getByTestId("live-status").getByText("live").waitFor();

  step("register a device; the password is shown once");
  await page.getByRole("button", { name: "Register device" }).click();
  await page.getByLabel("Device id").fill("reefer-1");
  await page.getByLabel("Name").fill("Reefer one");
  await page.getByLabel("Tags").fill("site=berlin, kind=reefer");
  await page.getByRole("button", { name: "Register", exact: true }).click();
  const secret = (await page.getByTestId("secret-once").innerText()).trim().split("\n");
  await shoot(page, "device-password-once");
  await page.getByRole("button", { name: "I have stored it" }).click();
  await page.getByTestId("device-row").filter({ hasText: "reefer-1" }).waitFor();
  await shoot(page, "fleet");

  step("create a rule; the form counts the devices its selector matches");
  await go(page, "/rules", "Rules");
  await page.getByRole("button", { name: "New rule" }).click();
  await page.getByLabel("Name").fill("Too warm");
  await page.getByLabel("Metric").fill("temperature_c");
  await page.getByRole("textbox", { name: /^Threshold/ }).fill("30");
  await page.getByLabel("Device selector").fill("site=berlin");
  await page.getByTestId("selector-matches").getByText("Matches 1 active device").waitFor();
  await shoot(page, "rule-form");
  await page.getByRole("button", { name: "Save rule" }).click();
  await page.getByTestId("rules-row").filter({ hasText: "Too warm" }).waitFor();
  await shoot(page, "rules");

  step("create a webhook integration; its whsec_ secret is shown once");
  await go(page, "/integrations", "Integrations");
  await page.getByRole("button", { name: "New integration" }).click();
  await page.getByLabel("Name").fill("Ops webhook");
  await page.getByLabel("URL").fill(WEBHOOK_URL);
  await page.getByRole("button", { name: "Save integration" }).click();
  const whsec = (await page.getByTestId("secret-once").innerText()).trim();
  result.webhookSecretPrefix = whsec.slice(0, 6);
  await page.getByRole("button", { name: "I have stored it" }).click();
  await page.getByTestId("integrations-row").filter({ hasText: "Ops webhook" }).waitFor();
  await shoot(page, "integrations");

  step("create a route to it");
  await go(page, "/routes", "Routes");
  await page.getByRole("button", { name: "New route" }).click();
  await page.getByLabel("Name").fill("Everything to ops");
  await page.getByRole("textbox", { name: "Integration" }).click();
  await page.getByRole("option", { name: /Ops webhook/ }).click();
  await page.getByRole("button", { name: "Save route" }).click();
  await page.getByTestId("routes-row").filter({ hasText: "Everything to ops" }).waitFor();
  await shoot(page, "routes");

  step("the alerts page is open when the device breaches");
  await go(page, "/alerts", "Alerts");
  await page.evaluate(() => (window.__sameDocument = true));
  if ((await page.getByTestId("alert-row").count()) !== 0) throw new Error("an alert before the breach");
  console.log(`NEED_BREACH ${JSON.stringify({ device_id: "reefer-1", username: secret[0], password: secret[1] })}`);
  await nextLine(); // BREACH_STARTED
  const row = page.getByTestId("alert-row").filter({ hasText: "reefer-1" });
  await row.waitFor({ timeout: 60_000 });
  console.log("ALERT_SEEN");
  result.alertAppearedWithoutReload = await page.evaluate(() => window.__sameDocument === true);
  await shoot(page, "alerts");

  step("acknowledge it");
  await row.getByRole("link").first().click();
  await page.getByRole("button", { name: "Acknowledge" }).click();
  await page.getByTestId("alert-event").filter({ hasText: "AlertAcknowledged" }).waitFor();
  await page.getByTestId("delivery").filter({ hasText: "succeeded" }).first().waitFor({ timeout: 60_000 });
  await shoot(page, "alert-detail");
  result.acknowledged = true;

  step("device page: latest values, chart, history");
  await page.getByRole("link", { name: "reefer-1" }).click();
  await page.getByRole("heading", { level: 1, name: "Reefer one" }).waitFor();
  await page.getByTestId("chart").waitFor();
  await shoot(page, "device");
  step("rotate its credentials: a new password, shown once");
  await page.getByRole("button", { name: "Rotate credentials" }).click();
  await page.getByRole("button", { name: "Rotate", exact: true }).click();
  const rotated = (await page.getByTestId("secret-once").innerText()).trim().split("\n");
  result.rotatedPasswordDiffers = rotated[0] === secret[0] && rotated[1] !== secret[1] && rotated[1].length >= 16;
  await page.getByRole("button", { name: "I have stored it" }).click();
  await page.getByRole("row", { name: /Credentials version 2/ }).waitFor();
  step("edit the device's tags");
  await page.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Tags").fill("site=hamburg");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByTestId("device-tags").getByText("site=hamburg").waitFor();

  step("quarantine shows the malformed message with its reason and count");
  await go(page, "/quarantine", "Quarantine");
  await page.getByTestId("quarantine-row").filter({ hasText: "BAD_JSON" }).waitFor();
  await page.getByTestId("quarantine-counts").getByText("BAD_JSON").waitFor();
  await shoot(page, "quarantine");
  await go(page, "/live", "Live");
  await page.getByTestId("live-row").filter({ hasText: "DeviceUpdated" }).waitFor();
  await shoot(page, "live");
  return { context, page };
}

async function viewer(browser) {
  step("a viewer sees no write controls");
  const { context, page } = await signIn(browser, { tenant: "acme", roles: ["viewer"], username: "victor" });
  await page.getByTestId("device-row").filter({ hasText: "reefer-1" }).waitFor();
  const count = (name) => page.getByRole("button", { name }).count();
  result.viewer.registerButtons = await count("Register device");
  await page.getByRole("link", { name: "reefer-1" }).click();
  await page.getByRole("heading", { level: 1, name: "Reefer one" }).waitFor();
  result.viewer.deviceWriteButtons = (await count("Edit")) + (await count("Rotate credentials")) + (await count("Decommission"));
  await shoot(page, "viewer-device");
  await go(page, "/alerts", "Alerts");
  await page.locator("label").filter({ hasText: /^all$/ }).click();
  await page.getByTestId("alert-row").first().waitFor();
  result.viewer.alertsSeen = await page.getByTestId("alert-row").count();
  await page.getByTestId("alert-row").first().getByRole("link").first().click();
  await page.getByTestId("alert-event").first().waitFor();
  result.viewer.alertWriteButtons = (await count("Acknowledge")) + (await count("Silence")) + (await count("Close"));
  await go(page, "/rules", "Rules");
  await page.getByTestId("rules-row").first().waitFor();
  result.viewer.ruleWriteButtons = (await count("New rule")) + (await count("Edit")) + (await count("Delete"));
  await shoot(page, "viewer-rules");
  await context.close();
}

async function operator(browser) {
  step("an operator may act on alerts but not manage devices or rules");
  const { context, page } = await signIn(browser, { tenant: "acme", roles: ["operator"], username: "otto" });
  await page.getByTestId("device-row").first().waitFor();
  const count = (name) => page.getByRole("button", { name }).count();
  result.operator = { registerButtons: await count("Register device") };
  await go(page, "/alerts", "Alerts");
  await page.locator("label").filter({ hasText: /^all$/ }).click();
  await page.getByTestId("alert-row").first().getByRole("link").first().click();
  await page.getByTestId("alert-event").first().waitFor();
  result.operator.silenceButtons = await count("Silence");
  await go(page, "/rules", "Rules");
  await page.getByTestId("rules-row").first().waitFor();
  result.operator.ruleWriteButtons = (await count("New rule")) + (await count("Edit")) + (await count("Delete"));
  await context.close();
}

async function otherTenant(browser, adminPage) {
  step("a second tenant sees none of it");
  const { context, page } = await signIn(browser, { tenant: "globex", roles: ["tenant-admin"], username: "gina" });
  await page.getByText("No devices match.").waitFor();
  result.globex.devices = await page.getByTestId("device-row").count();
  await go(page, "/alerts", "Alerts");
  await page.locator("label").filter({ hasText: /^all$/ }).click();
  await page.getByText("No  alerts.").or(page.getByText("No alerts.")).waitFor();
  result.globex.alerts = await page.getByTestId("alert-row").count();
  for (const [path, name, testId] of [["/rules", "Rules", "rules-row"], ["/integrations", "Integrations", "integrations-row"], ["/routes", "Routes", "routes-row"]]) {
    await go(page, path, name);
    await page.getByText(/No \w+s yet\./).waitFor();
    result.globex[name.toLowerCase()] = await page.getByTestId(testId).count();
  }
  await page.goto(`${CONSOLE}/devices/reefer-1`);
  await page.getByTestId("problem").waitFor();
  result.globex.directDevice = (await page.getByTestId("problem").innerText()).split("\n")[0].trim();
  await shoot(page, "globex-device-404");

  step("live: acme's change never reaches globex's stream; globex's own does");
  await page.getByTestId("live-status").getByText("live").waitFor();
  await adminPage.getByRole("navigation").getByRole("link", { name: "Fleet" }).click();
  await adminPage.getByRole("link", { name: "reefer-1" }).click();
  await adminPage.getByRole("button", { name: "Edit" }).click();
  await adminPage.getByLabel("Name").fill("Reefer uno");
  await adminPage.getByRole("button", { name: "Save" }).click();
  await adminPage.getByRole("heading", { level: 1, name: "Reefer uno" }).waitFor();
  await go(adminPage, "/live", "Live");
  await adminPage.getByTestId("live-row").filter({ hasText: "DeviceUpdated" }).nth(1).waitFor();
  await go(page, "/fleet", "Fleet");
  await page.getByRole("button", { name: "Register device" }).click();
  await page.getByLabel("Device id").fill("globex-1");
  await page.getByRole("button", { name: "Register", exact: true }).click();
  await page.getByRole("button", { name: "I have stored it" }).click();
  await go(page, "/live", "Live");
  await page.getByTestId("live-row").filter({ hasText: "DeviceRegistered" }).waitFor();
  await page.waitForTimeout(1500); // anything of acme's would have arrived by now
  const streams = await page.getByTestId("live-row").allInnerTexts();
  result.globex.liveOwnEvents = streams.filter((row) => row.includes("device-globex-globex-1")).length;
  result.globex.liveOtherEvents = streams.filter((row) => !row.includes("device-globex-")).length;
  await context.close();
}

async function noTenant(browser) {
  step("a token without a tenant gets a clear screen");
  const { context, page } = await signIn(browser, { tenant: "", roles: ["platform-admin"], username: "root" });
  await page.getByRole("heading", { name: "No access to the console" }).waitFor();
  result.noTenant = await page.getByRole("alert").innerText();
  await shoot(page, "no-tenant");
  await context.close();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const { context, page } = await admin(browser);
  await viewer(browser);
  await operator(browser);
  await otherTenant(browser, page);
  await noTenant(browser);
  step("the admin's session refreshed its token and still works");
  await go(page, "/fleet", "Fleet");
  await page.getByTestId("device-row").filter({ hasText: "reefer-1" }).waitFor();
  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  result.signedOut = true;
  await context.close();
} catch (error) {
  result.error = String(error?.stack ?? error);
} finally {
  await browser.close();
  console.log(`RESULT ${JSON.stringify(result)}`);
  lines.close();
}
