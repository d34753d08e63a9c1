// A real OpenID Connect provider for the SSO tests: npm `oidc-provider` (a certified
// implementation) on 127.0.0.1. Its sign-in page is replaced by one that signs in the
// account named by `login_hint` and grants what the client asked for, so a test can
// drive the whole authorization code flow (with PKCE, which it requires) without a
// browser. Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
import http from 'node:http';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);

const accounts = {
  'admin@example.com': { email_verified: true, groups: ['switchyard-admins'] },
  'analyst@example.com': { email_verified: true, groups: ['analysts', 'everyone'] },
  'sales@example.com': { email_verified: true, groups: ['sales'] },
  'unverified@example.com': { email_verified: false, groups: ['switchyard-admins'] },
  // Another workspace's owner, as this provider (not theirs) asserts it.
  'owner@example.com': { email_verified: true, groups: ['switchyard-admins'] },
};

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['groups'] },
  // Put the scopes' claims in the ID token itself, where the client reads the groups.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['switchyard-test-only'] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, email: id, ...account }; } };
  },
});

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  if (!req.url.startsWith('/interaction/')) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    let result;
    if (details.prompt.name === 'login') {
      const email = details.params.login_hint;
      if (!accounts[email]) {
        res.writeHead(400).end(`no test account ${email}`);
        return;
      }
      result = { login: { accountId: email } };
    } else {
      const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (error) {
    res.writeHead(500).end(String(error));
  }
});
server.listen(Number(port), '127.0.0.1', () => console.log(`oidc provider listening on ${port}`));
