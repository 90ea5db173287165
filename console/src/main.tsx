import "@mantine/core/styles.css";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { loadConfig } from "./config";

const root = createRoot(document.getElementById("root")!);
loadConfig()
  .then((config) => root.render(<App config={config} />))
  .catch((error: unknown) => {
    root.render(
      <main style={{ fontFamily: "system-ui", padding: "2rem" }}>
        <h1>The console is not configured</h1>
        <p role="alert">{String(error)}</p>
        <p>The deployment writes /config.json with the OIDC issuer and the API URL.</p>
      </main>,
    );
  });
