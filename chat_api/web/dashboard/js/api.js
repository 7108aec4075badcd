// The operator API client. The bearer token lives in sessionStorage only (gone when the tab
// closes); a 401 sends the operator back to the login screen.

const TOKEN_KEY = "chatdistill.operator.token";
const OPERATOR_KEY = "chatdistill.operator";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function currentOperator() {
  const raw = sessionStorage.getItem(OPERATOR_KEY);
  return raw ? JSON.parse(raw) : null;
}

export function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(OPERATOR_KEY);
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const auth = token();
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const error = data && data.error ? data.error : { code: "http_error", message: res.statusText };
    if (res.status === 401 && !path.endsWith("/login")) {
      forget();
      onUnauthorized();
    }
    throw new ApiError(res.status, error.code, error.message);
  }
  return data;
}

export async function login(email, password) {
  const out = await api("POST", "/v1/operator/login", { email, password });
  sessionStorage.setItem(TOKEN_KEY, out.access_token);
  sessionStorage.setItem(OPERATOR_KEY, JSON.stringify(out.operator));
  return out.operator;
}

export async function logout() {
  try {
    await api("POST", "/v1/operator/logout");
  } finally {
    forget();
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
