import { AppShell, Badge, Burger, Button, Group, NavLink, Text, Tooltip } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import type { ReactNode } from "react";
import { NavLink as RouterLink, useLocation } from "react-router-dom";
import { useAuth } from "../auth/AuthProvider";
import { useLive } from "../live/LiveProvider";

const PAGES = [
  ["/fleet", "Fleet"],
  ["/alerts", "Alerts"],
  ["/rules", "Rules"],
  ["/integrations", "Integrations"],
  ["/routes", "Routes"],
  ["/quarantine", "Quarantine"],
  ["/live", "Live"],
] as const;

const LIVE_LABEL = { connecting: "connecting", live: "live", reconnecting: "reconnecting", refused: "live updates refused" };
const LIVE_COLOR = { connecting: "gray", live: "green", reconnecting: "yellow", refused: "red" };

export function Shell({ children }: { children: ReactNode }) {
  const [opened, { toggle }] = useDisclosure();
  const { access, signOut } = useAuth();
  const live = useLive();
  const location = useLocation();
  const claims = access && "claims" in access ? access.claims : null;
  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 200, breakpoint: "sm", collapsed: { mobile: !opened } }} padding="md">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Toggle navigation" />
            <Text fw={700} size="lg">
              FleetPulse
            </Text>
            {claims?.tenant && (
              <Badge variant="light" color="gray" data-testid="tenant">
                {claims.tenant}
              </Badge>
            )}
          </Group>
          <Group gap="sm" wrap="nowrap">
            <Tooltip label={live.detail ?? "Alerts and changes arrive without reload"}>
              <Badge variant="dot" color={LIVE_COLOR[live.status]} data-testid="live-status">
                {LIVE_LABEL[live.status]}
              </Badge>
            </Tooltip>
            <Text size="sm" visibleFrom="sm" data-testid="whoami">
              {claims?.username} ({claims?.roles.join(", ")})
            </Text>
            <Button size="xs" variant="default" onClick={() => void signOut()}>
              Sign out
            </Button>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" component="nav" aria-label="Main">
        {PAGES.map(([path, label]) => (
          <NavLink
            key={path}
            component={RouterLink}
            to={path}
            label={label}
            active={location.pathname.startsWith(path) || (path === "/fleet" && location.pathname.startsWith("/devices"))}
          />
        ))}
      </AppShell.Navbar>
      <AppShell.Main>{children}</AppShell.Main>
    </AppShell>
  );
}
