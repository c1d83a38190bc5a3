// A real OpenID provider for the SSO tests: panva/oidc-provider (OpenID Certified), configured
// from the environment and listening on 127.0.0.1. Nobody here implements the protocol: this
// file only wires configuration, accounts and the library's own development login/consent pages.
//
// OIDC_PEER_CONFIG = {"port": 4000, "clients": [{client_id, client_secret, redirect_uris}],
//                     "accounts": {"alice": {"email": ..., "email_verified": true, "name": ..., "groups": [...]}}}
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_PEER_CONFIG ?? '{}');
const port = Number(config.port);
const issuer = `http://127.0.0.1:${port}`;
const accounts = config.accounts ?? {};

const provider = new Provider(issuer, {
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
  scopes: ['openid', 'email', 'profile', 'groups'],
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

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
