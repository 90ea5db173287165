import {
  Button,
  Center,
  Loader,
  MantineProvider,
  Modal,
  Paper,
  Stack,
  Text,
  Title,
  createTheme,
  darken,
  defaultVariantColorsResolver,
  parseThemeColor,
  type CSSVariablesResolver,
  type VariantColorsResolver,
} from "@mantine/core";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { lazy, Suspense, useMemo } from "react";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";
import { ApiProvider } from "./api/context";
import { ApiError } from "./api/problem";
import { AuthProvider, useAuth } from "./auth/AuthProvider";
import { Shell } from "./components/Shell";
import type { ConsoleConfig } from "./config";
import { LiveProvider } from "./live/LiveProvider";

const Fleet = lazy(() => import("./pages/Fleet"));
const Device = lazy(() => import("./pages/Device"));
const Alerts = lazy(() => import("./pages/Alerts"));
const AlertDetail = lazy(() => import("./pages/AlertDetail"));
const Rules = lazy(() => import("./pages/Rules"));
const Integrations = lazy(() => import("./pages/Integrations"));
const RoutesPage = lazy(() => import("./pages/Routes"));
const Quarantine = lazy(() => import("./pages/Quarantine"));
const Live = lazy(() => import("./pages/Live"));

/** Text of light and outline variants darkened until it passes WCAG AA on its tint (axe). */
const strongText = (color: string) => darken(color, 0.35);

const variantColorResolver: VariantColorsResolver = (input) => {
  const colors = defaultVariantColorsResolver(input);
  const parsed = parseThemeColor({ color: input.color ?? input.theme.primaryColor, theme: input.theme });
  if (parsed.isThemeColor && (input.variant === "light" || input.variant === "outline")) {
    const strong = strongText(input.theme.colors[parsed.color][9]);
    return { ...colors, color: strong, border: input.variant === "outline" ? `1px solid ${strong}` : colors.border };
  }
  return colors;
};

const theme = createTheme({
  primaryColor: "blue",
  primaryShade: 8, // white on blue-8 passes AA; blue-6 does not
  defaultRadius: "sm",
  variantColorResolver,
  components: {
    Modal: Modal.extend({ defaultProps: { closeButtonProps: { "aria-label": "Close dialog" } } }),
  },
});

const cssVariablesResolver: CSSVariablesResolver = (current) => ({
  variables: {},
  light: {
    "--mantine-color-dimmed": "var(--mantine-color-gray-7)",
    "--mantine-color-placeholder": "var(--mantine-color-gray-6)",
    ...Object.fromEntries(
      Object.entries(current.colors).map(([name, shades]) => [`--mantine-color-${name}-light-color`, strongText(shades[9])]),
    ),
  },
  dark: {},
});

function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 10_000,
        // 4xx answers do not get better by asking again; 403s are shown, never swallowed
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
      },
    },
  });
}

export function App({ config }: { config: ConsoleConfig }) {
  const queryClient = useMemo(makeQueryClient, []);
  return (
    <MantineProvider theme={theme} defaultColorScheme="light" cssVariablesResolver={cssVariablesResolver}>
      <AuthProvider config={config} fallback={(phase, signIn) => <SignIn phase={phase} signIn={signIn} />}>
        <QueryClientProvider client={queryClient}>
          <Gate config={config} />
        </QueryClientProvider>
      </AuthProvider>
    </MantineProvider>
  );
}

function SignIn({ phase, signIn }: { phase: { kind: string; message?: string }; signIn: () => Promise<void> }) {
  if (phase.kind === "loading") {
    return (
      <Center h="100vh">
        <Loader aria-label="Loading" />
      </Center>
    );
  }
  return (
    <Center h="100vh" component="main">
      <Paper withBorder p="xl" maw={420}>
        <Stack>
          <Title order={1} size="h2">
            FleetPulse console
          </Title>
          <Text>Operate your fleet: devices, alerts, rules and notifications.</Text>
          {phase.kind === "failed" && (
            <Text c="red.8" role="alert">
              Sign-in failed: {phase.message}
            </Text>
          )}
          <Button onClick={() => void signIn()}>Sign in</Button>
        </Stack>
      </Paper>
    </Center>
  );
}

/** A signed-in user without a tenant or a tenant role gets told so, with a way out. */
function Gate({ config }: { config: ConsoleConfig }) {
  const auth = useAuth();
  const access = auth.access;
  if (access?.kind !== "ok") {
    const why =
      access?.kind === "no-tenant"
        ? "Your account is not assigned to a tenant (the token has no tenant_id claim)."
        : access?.kind === "no-role"
          ? "Your account has no FleetPulse role in this tenant (viewer, operator or tenant-admin)."
          : "The sign-in returned a token the console cannot read.";
    return (
      <Center h="100vh" component="main">
        <Paper withBorder p="xl" maw={480}>
          <Stack>
            <Title order={1} size="h2">
              No access to the console
            </Title>
            <Text role="alert">{why}</Text>
            <Text size="sm">Ask an administrator to assign you a tenant and a role, then sign in again.</Text>
            <Button variant="default" onClick={() => void auth.signOut()}>
              Sign out
            </Button>
          </Stack>
        </Paper>
      </Center>
    );
  }
  return (
    <ApiProvider apiUrl={config.apiUrl} token={auth.token}>
      <LiveProvider apiUrl={config.apiUrl} token={auth.token}>
        <BrowserRouter>
          <Shell>
            <Suspense
              fallback={
                <Center p="xl">
                  <Loader aria-label="Loading page" />
                </Center>
              }
            >
              <Routes>
                <Route path="/" element={<Navigate to="/fleet" replace />} />
                <Route path="/fleet" element={<Fleet />} />
                <Route path="/devices/:deviceId" element={<Device />} />
                <Route path="/alerts" element={<Alerts />} />
                <Route path="/alerts/:alertId" element={<AlertDetail />} />
                <Route path="/rules" element={<Rules />} />
                <Route path="/integrations" element={<Integrations />} />
                <Route path="/routes" element={<RoutesPage />} />
                <Route path="/quarantine" element={<Quarantine />} />
                <Route path="/live" element={<Live />} />
                <Route path="*" element={<Navigate to="/fleet" replace />} />
              </Routes>
            </Suspense>
          </Shell>
        </BrowserRouter>
      </LiveProvider>
    </ApiProvider>
  );
}
