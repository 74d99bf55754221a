// The page: sign-in, the missions the caller may read, and for one mission its views (ask, a
// run, history, documents), routed by the URL's hash so every run has a link of its own.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "./api";
import { devRoles, isDev, setDevRoles, signIn, signOut } from "./auth";
import { href, parseRoute, type Route } from "./format";
import type { Me, MissionSummary, MissionView } from "./types";
import { Ask } from "./views/Ask";
import { Documents } from "./views/Documents";
import { History } from "./views/History";
import { Run } from "./views/Run";

function useRoute(): Route {
  const [route, setRoute] = useState(parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

export function SignIn({ error }: { error?: string }) {
  return (
    <main id="main" class="signin">
      <h1>StratMaster</h1>
      <p>Research on your mission's documents, every sentence one click from the text that states it.</p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!isDev() && (
        <button type="button" onClick={() => signIn()}>
          Sign in
        </button>
      )}
    </main>
  );
}

export function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [missions, setMissions] = useState<MissionSummary[] | null>(null);
  const [mission, setMission] = useState<MissionView | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [as, setAs] = useState(devRoles());

  const fail = (e: unknown) => setError(e instanceof ApiError ? e.message : String(e));
  useEffect(() => {
    setError(null);
    api<{ missions: MissionSummary[] }>("/missions")
      .then((list) => setMissions(list.missions))
      .catch(fail);
  }, [as]);

  // who the caller is and what they may do in this mission: no workflow behind it, so the
  // mission's views render at once; the mission's own record follows (and says if it is gone)
  useEffect(() => {
    setMe(null);
    setMission(null);
    const q = route.mission ? `?mission=${encodeURIComponent(route.mission)}` : "";
    api<Me>(`/me${q}`).then(setMe).catch(fail);
    if (route.mission) api<MissionView>(`/missions/${encodeURIComponent(route.mission)}`).then(setMission).catch(fail);
  }, [route.mission, as]);

  if (error && error.includes("token") && !isDev()) return <SignIn error={error} />;
  const m = route.mission;
  const perms = new Set(me?.permissions ?? []);
  const tabs: [string, string, Route["view"][]][] = [
    ["Ask", "", ["ask", "run"]],
    ["History", "history", ["history"]],
    ["Documents", "documents", ["documents"]],
  ];
  return (
    <>
      <a class="skip" href="#main">
        Skip to the content
      </a>
      <header class="top">
        <a class="brand" href="#/">
          StratMaster
        </a>
        {missions && missions.length > 0 && (
          <label class="picker">
            Mission{" "}
            <select
              value={m ?? ""}
              onChange={(e) => {
                const v = (e.target as HTMLSelectElement).value;
                location.hash = v ? href(v) : "#/";
              }}
            >
              <option value="">choose…</option>
              {missions.map((x) => (
                <option key={x.mission} value={x.mission}>
                  {x.name || x.mission}
                </option>
              ))}
            </select>
          </label>
        )}
        <span class="spacer" />
        {me && (
          <span class="who" data-testid="who">
            {me.username}
            {m && me.permissions ? ` · ${[...perms].sort().join(", ") || "no access"}` : ""}
          </span>
        )}
        {isDev() && (
          <label class="picker">
            View as{" "}
            <select
              data-testid="view-as"
              value={as}
              onChange={(e) => {
                const v = (e.target as HTMLSelectElement).value;
                setDevRoles(v);
                setAs(v);
              }}
            >
              <option value="">platform admin</option>
              {m && <option value={`mission:${m}:admin`}>{m} admin</option>}
              {m && <option value={`mission:${m}:writer`}>{m} writer</option>}
              {m && <option value={`mission:${m}:reader`}>{m} reader</option>}
            </select>
          </label>
        )}
        {!isDev() && (
          <button type="button" class="linkish" onClick={() => signOut()}>
            Sign out
          </button>
        )}
      </header>
      {m && (
        <nav class="tabs" aria-label={`mission ${m}`}>
          {tabs.map(([label, view, views]) => (
            <a key={label} href={href(m, view)} aria-current={views.includes(route.view) ? "page" : undefined}>
              {label}
            </a>
          ))}
          {mission && (
            <span class="mission-meta" data-testid="mission-meta">
              {mission.summary.name || mission.summary.mission}
              {mission.summary.active_version ? ` · cartridge ${mission.summary.active_version}` : ""}
              {mission.summary.status !== "active" ? ` · ${mission.summary.status}` : ""}
            </span>
          )}
        </nav>
      )}
      <main id="main" tabIndex={-1}>
        {isDev() && (
          <p class="dev-banner">Dev mode: no sign-in; you are the platform admin unless you choose to view as another role.</p>
        )}
        {error && (
          <p role="alert" class="error" data-testid="page-error">
            {error}
          </p>
        )}
        {!m && <Missions missions={missions} />}
        {m && me && route.view === "ask" && <Ask mission={m} canWrite={perms.has("write")} />}
        {m && me && route.view === "run" && route.workflowId && <Run mission={m} workflowId={route.workflowId} />}
        {m && me && route.view === "history" && <History mission={m} />}
        {m && me && route.view === "documents" && <Documents mission={m} canWrite={perms.has("write")} />}
      </main>
    </>
  );
}

function Missions({ missions }: { missions: MissionSummary[] | null }) {
  if (!missions) return <p aria-live="polite">Loading your missions…</p>;
  if (!missions.length) return <p>You may read no mission yet. Ask an administrator for a role in one.</p>;
  return (
    <section>
      <h1>Your missions</h1>
      <ul class="missions" data-testid="missions">
        {missions.map((x) => (
          <li key={x.mission}>
            <a href={href(x.mission)}>{x.name || x.mission}</a>{" "}
            <span class="sub">
              {x.mission} · {x.status}
              {x.active_version ? ` · cartridge ${x.active_version}` : ""}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
