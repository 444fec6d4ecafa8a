// A real OpenID Connect provider for the sign-in tests (oidc-provider, as a body's own
// identity provider would be): authorization code with PKCE, one confidential client, its
// built-in development login and consent pages, plain http on 127.0.0.1.
//
//   node tests/oidc/provider.mjs CONFIG.json     (or OIDC_PROVIDER_CONFIG=CONFIG.json)
//
// CONFIG.json: {"port", "client_id", "client_secret", "redirect_uris": [...],
//               "accounts": "ACCOUNTS.json", "id_token_claims": true}
// ACCOUNTS.json, read at every look-up: {"LOGIN": {"email", "email_verified", "name"}}; the
// login name is the account's subject (sub). The login page takes any login name (the
// password is not checked): a name not in the file signs in an account whose address nobody
// knows, LOGIN@unknown.example.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const configPath = process.argv[2] || process.env.OIDC_PROVIDER_CONFIG;
if (!configPath) {
  console.error('usage: node provider.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const port = Number(process.env.OIDC_PROVIDER_PORT || config.port);
const issuer = `http://127.0.0.1:${port}`;

function accounts() {
  return JSON.parse(readFileSync(config.accounts, 'utf8'));
}

function lookUp(id) {
  return accounts()[id] || { email: `${id}@unknown.example`, email_verified: true, name: id };
}

// A signing key of this run only: the relying party must fetch it from the JWKS.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: config.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: config.token_endpoint_auth_method || 'client_secret_basic',
    },
  ],
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // The scopes' claims in the ID token itself (as most providers do), unless the test asks
  // for the strict reading, where they are only at the userinfo endpoint.
  conformIdTokenClaims: config.id_token_claims === false,
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
  },
  async findAccount(ctx, id) {
    const account = lookUp(id);
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: account.email,
          email_verified: account.email_verified,
          name: account.name,
        };
      },
    };
  },
});

// What went wrong, in the log the tests print when the provider fails them.
for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
  'jwks.error', 'discovery.error', 'end_session.error']) {
  provider.on(event, (ctx, error) => {
    console.error(`${event}: ${error.name} ${error.message} ${error.error_description || ''}`);
  });
}

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${issuer}`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
