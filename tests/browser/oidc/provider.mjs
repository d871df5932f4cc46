// A real OpenID Provider for the tests (npm oidc-provider): `node provider.mjs` with its settings as JSON in
// OIDC_TEST_CONFIG. It listens on a free loopback port and prints one line, `listening <issuer>`.
//
// Settings: {clients: [{client_id, client_secret?, jwks?, redirect_uris, post_logout_redirect_uris}],
//            accounts: {login: {national_id, acr}}, default_acr}
// - PKCE (S256) required for every client; ID tokens signed with ES256 (a P-256 key made at start);
// - devInteractions on: the provider's own sign-in form (any password) and no consent screen for our
//   first-party clients; findAccount maps the login to its national id claim (`national_id`);
// - the sign-in's `acr` comes from the account (devInteractions alone sets none);
// - RP-initiated logout on (its confirmation form, then back to the client).
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import Provider from "oidc-provider";

const settings = JSON.parse(process.env.OIDC_TEST_CONFIG || "{}");
const accounts = settings.accounts || {};
const EIDAS = ["http://eidas.europa.eu/LoA/low", "http://eidas.europa.eu/LoA/substantial", "http://eidas.europa.eu/LoA/high"];
const signingKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });

const server = createServer();
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: (settings.clients || []).map((c) => ({
      grant_types: ["authorization_code"], response_types: ["code"],
      id_token_signed_response_alg: "ES256",
      token_endpoint_auth_method: c.jwks ? "private_key_jwt" : "client_secret_basic",
      ...(c.jwks ? { token_endpoint_auth_signing_alg: "ES256" } : {}),
      ...c,
    })),
    jwks: { keys: [{ ...signingKey, alg: "ES256", use: "sig", kid: "test-es256" }] },
    acrValues: EIDAS,
    claims: { openid: ["sub", "national_id"] },
    conformIdTokenClaims: false,   // the national id claim in the ID token itself
    pkce: { required: () => true },
    cookies: { keys: [randomBytes(32).toString("hex")] },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    async findAccount(ctx, sub) {
      const account = accounts[sub] || {};
      return { accountId: sub, async claims() { return { sub, national_id: account.national_id || sub }; } };
    },
    async loadExistingGrant(ctx) {   // first-party clients: no consent screen
      const { client, session } = ctx.oidc;
      const existing = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      if (existing) return ctx.oidc.provider.Grant.find(existing);
      const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope("openid");
      grant.addOIDCClaims(["national_id", "acr"]);
      await grant.save();
      return grant;
    },
  });
  const finished = provider.interactionFinished.bind(provider);
  provider.interactionFinished = (req, res, result, options) => {
    if (result.login) result.login.acr = (accounts[result.login.accountId] || {}).acr || settings.default_acr || EIDAS[1];
    return finished(req, res, result, options);
  };
  server.on("request", provider.callback());
  console.log(`listening ${issuer}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
