// A real OpenID provider for the SSO tests: panva/oidc-provider (OpenID Certified), configured
// from the environment and listening on 127.0.0.1. Nobody here implements the protocol: this
// file only wires configuration, accounts and the library's own development login/consent pages.
//
// OIDC_PEER_CONFIG = {"port": 4000, "clients": [{client_id, client_secret, redirect_uris}],
//                     "accounts": {"alice": {"email": ..., "email_verified": true, "name": ..., "groups": [...]}}}
//
// For GitHub login the same provider also plays a GitHub Enterprise Server: its OAuth 2.0
// endpoints sit at GitHub's paths (/login/oauth/authorize, /login/oauth/access_token) and two
// read-only REST resources, /api/v3/user and /api/v3/user/emails, answer for the account an
// access token issued by oidc-provider belongs to (accounts carry `github_id` and
// `github_emails` in GitHub's shape). The OAuth 2.0 protocol itself is oidc-provider's.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_PEER_CONFIG ?? '{}');
const port = Number(config.port);
const issuer = `http://127.0.0.1:${port}`;
const accounts = config.accounts ?? {};

// A signing key of its own, made at every start (a restart is a key rotation), rather than the
// library's fixed development key.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: (config.clients ?? []).map((c) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...c,
  })),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'read:user', 'user:email'],
  routes: { authorization: '/login/oauth/authorize', token: '/login/oauth/access_token' },
  // Put the requested claims in the id_token itself (the relying party reads only the id_token).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['platform-test-peer-cookie-key'] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account };
      },
    };
  },
});
provider.proxy = false;

// How many times the relying party fetched the discovery document and the keys (tests check
// that it caches them): GET /__peer/stats. Counting only; the answers are oidc-provider's.
const fetched = { discovery: 0, jwks: 0 };
provider.use(async (ctx, next) => {
  if (ctx.path === '/__peer/stats') {
    ctx.body = fetched;
    return;
  }
  if (ctx.path === '/.well-known/openid-configuration') fetched.discovery += 1;
  if (ctx.path === '/jwks') fetched.jwks += 1;
  await next();
});

provider.use(async (ctx, next) => {
  if (ctx.path !== '/api/v3/user' && ctx.path !== '/api/v3/user/emails') {
    await next();
    return;
  }
  const m = /^(?:Bearer|token) (.+)$/.exec(ctx.get('authorization') ?? '');
  const token = m ? await provider.AccessToken.find(m[1]) : undefined;
  const account = token ? accounts[token.accountId] : undefined;
  if (!account) {
    ctx.status = 401;
    ctx.body = { message: 'Bad credentials' };
    return;
  }
  ctx.body = ctx.path.endsWith('/emails')
    ? account.github_emails ?? []
    : { id: account.github_id, login: token.accountId, name: account.name ?? null };
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
