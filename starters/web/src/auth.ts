// Signing in. Dev mode (a loopback API without tokens): the caller is the platform admin, and
// may act with narrower roles ("view as") through the API's dev-only X-StratMaster-Dev-Roles
// header. OIDC mode: Keycloak's authorization code flow with PKCE (oidc-client-ts); the access
// token lives in this tab's sessionStorage and is sent as a bearer token to the API.
import { User, UserManager, WebStorageStateStore } from "oidc-client-ts";

export interface PageConfig {
  auth_mode: "dev" | "oidc";
  authority: string | null;
  client_id: string;
}

const DEV_ROLES_KEY = "stratmaster.devRoles";
export const DEV_ROLES_HEADER = "X-StratMaster-Dev-Roles";

let config: PageConfig | null = null;
let manager: UserManager | null = null;
let user: User | null = null;

export async function loadConfig(): Promise<PageConfig> {
  const r = await fetch("/ui/config.json", { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`the page's settings did not load (HTTP ${r.status})`);
  config = (await r.json()) as PageConfig;
  if (config.auth_mode === "oidc") {
    if (!config.authority) throw new Error("the API has no Keycloak URL configured");
    manager = new UserManager({
      authority: config.authority,
      client_id: config.client_id,
      redirect_uri: `${location.origin}/ui/`,
      post_logout_redirect_uri: `${location.origin}/ui/`,
      response_type: "code",
      scope: "openid",
      automaticSilentRenew: false, // a silent renewal needs a frame, which the page's policy forbids
      userStore: new WebStorageStateStore({ store: window.sessionStorage }),
    });
  }
  return config;
}

/** Completes a sign-in redirect when the URL carries one; true when signed in (or in dev mode). */
export async function signedIn(): Promise<boolean> {
  if (!config || config.auth_mode === "dev") return true;
  const params = new URLSearchParams(location.search);
  if (params.has("code") && params.has("state")) {
    user = await manager!.signinRedirectCallback();
    const back = typeof user.state === "string" && user.state.startsWith("#") ? user.state : location.hash;
    history.replaceState(null, "", `${location.pathname}${back}`);
  } else {
    user = await manager!.getUser();
  }
  return !!user && !user.expired;
}

export async function signIn(): Promise<void> {
  if (!manager) location.reload(); // the settings did not load: try again
  else await manager.signinRedirect({ state: location.hash });
}

export async function signOut(): Promise<void> {
  if (manager) await manager.signoutRedirect();
}

export function isDev(): boolean {
  return config?.auth_mode === "dev";
}

export function devRoles(): string {
  return sessionStorage.getItem(DEV_ROLES_KEY) ?? "";
}

export function setDevRoles(roles: string): void {
  if (roles) sessionStorage.setItem(DEV_ROLES_KEY, roles);
  else sessionStorage.removeItem(DEV_ROLES_KEY);
}

/** The headers that say who the caller is. */
export function authHeaders(): Record<string, string> {
  if (isDev()) {
    const roles = devRoles();
    return roles ? { [DEV_ROLES_HEADER]: roles } : {};
  }
  return user ? { Authorization: `Bearer ${user.access_token}` } : {};
}
