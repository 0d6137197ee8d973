/**
 * Passwords NixOS configurations write into the store by way of other languages and short names:
 * SQL in `services.postgresql.initialScript` (rule `sql-password`), and options named by `pass` or
 * `pw` (`requirePass`, `olcRootPW`) in `.nix` files, which the literal sweep cannot anchor on and
 * which must not be skipped as quiet text. Values are drawn fresh each run.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { looksLikeSecretValue } from '../../../../src/core/scan/rules/named-secrets.js';
import { scanText } from '../../../../src/core/scan/rules/rules.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

function password(length = 14): string {
  for (;;) {
    const value = randomBytes(length).toString('base64').replace(/[+/=]/g, '').slice(0, length);
    if (value.length === length && looksLikeSecretValue(value, 'plaintext-password') && /\d/.test(value)) return value;
  }
}

function found(text: string, rule: string, nixSource = false): string[] {
  return scanText(text, { operatorSecrets: [], nixSource }).filter((hit) => hit.rule === rule).map((hit) => String(hit.secret));
}

/** Path, rule and line of each finding of a scan of a fresh folder holding `files`. */
async function treeFindings(files: Record<string, string>): Promise<(string | number | undefined)[][]> {
  const root = await tempDir();
  await writeTree(root, files);
  const report = await scanPaths([root], { operatorSecrets: false });
  return report.findings.map((finding) => [finding.path, finding.rule, finding.line]);
}

describe('sql-password', () => {
  it('finds passwords set in SQL, PostgreSQL and MySQL, at their offsets', () => {
    const [a, b, c, d] = [password(), password(), password(), `${password(8)}''q`];
    const text = `services.postgresql.initialScript = pkgs.writeText "init.sql" ''
  CREATE ROLE nextcloud WITH LOGIN PASSWORD '${a}' CREATEDB;
  ALTER USER postgres WITH ENCRYPTED PASSWORD '${b}';
'';
services.mysql.initialScript = pkgs.writeText "init.sql" "CREATE USER 'app'@'localhost' IDENTIFIED BY '${c}';";
create role grafana login password '${d}';
`;
    expect(found(text, 'sql-password')).toEqual([a, b, c, d.replace("''", "'")]);
    const hits = scanText(text, { operatorSecrets: [] }).filter((hit) => hit.rule === 'sql-password');
    expect(hits.map((hit) => text.slice(hit.start, hit.end))).toEqual([a, b, c, d]);
  });

  it("leaves stored hashes, placeholders and the user's own name alone", () => {
    const text = `CREATE ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$abc:def';
ALTER USER app PASSWORD 'md5${'0123456789abcdef'.repeat(2)}';
CREATE ROLE "matrix-synapse" WITH LOGIN PASSWORD 'synapse';
CREATE USER 'x'@'%' IDENTIFIED BY 'changeme';
-- the password column: SELECT password FROM users;
`;
    expect(found(text, 'sql-password')).toEqual([]);
  });
});

describe('empty strings of another language', () => {
  it("`password = \"''\"` (Jupyter's notebook server, no password) is not a password; a real one beside it is", () => {
    const real = password();
    const text = `services.jupyter = {\n  password = "''";\n};\nservices.murmur.password = "${real}";\nfoo.password = "\\"\\"";\n`;
    expect(found(text, 'nix-plaintext-password', true)).toEqual([real]);
  });
});

describe('Nix options named by pass or pw', () => {
  it('finds requirePass, olcRootPW, rootpw and adminpass literals in .nix files, also where the file looks quiet', async () => {
    const [a, b, c] = [password(), password(), password()];
    const text = `{
  services.redis.servers.main.requirePass = "${a}";
  services.openldap.settings.children."olcDatabase={1}mdb".attrs.olcRootPW = "${b}";
  services.foo.rootpw = "${c}";
}
`;
    expect(found(text, 'nix-plaintext-password', true)).toEqual([a, b, c]);
    // Only in Nix source: the same lines in another file are not read this way.
    expect(found(text, 'nix-plaintext-password', false)).toEqual([]);
    const root = await tempDir();
    await writeTree(root, { 'hosts/redis.nix': text, 'hosts/redis.txt': text });
    const report = await scanPaths([root], { operatorSecrets: false });
    expect(report.findings.map((f) => [f.path, f.rule, f.note])).toEqual([
      ['hosts/redis.nix', 'nix-plaintext-password', 'option requirePass'],
      ['hosts/redis.nix', 'nix-plaintext-password', 'option olcRootPW'],
      ['hosts/redis.nix', 'nix-plaintext-password', 'option rootpw'],
    ]);
  });

  it('leaves nginx passes, aliases, hashes, files and references alone', () => {
    const text = `{
  locations."/".proxyPass = "unix:/run/app.sock";
  locations."/grpc".grpcPass = "unix:/run/v2ray/v2ray.sock";
  environment.shellAliases.pw = "playwright";
  programs.fish.shellAbbrs.pass = "gopass show -c";
  attrs.olcRootPW = "{SSHA}c2FsdGVkaGFzaGVkdmFsdWU=";
  services.redis.servers.main.requirePassFile = "/run/secrets/redis";
  services.redis.servers.main.requirePass = "\${config.sops.placeholder.redis}";
  services.bar.bypass = "Xk3mQ8zL2xR7";
}
`;
    expect(found(text, 'nix-plaintext-password', true)).toEqual([]);
  });
});

describe('passwords under other names', () => {
  it('config keys ending in _pass, -pass, _passwd or passphrase, in TOML, YAML, INI and PHP; not their lengths, files or flags', () => {
    const values = Array.from({ length: 6 }, () => password());
    const text = `smtp_pass = "${values[0]}"
db-pass: ${values[1]}
LDAP_BIND_PASSWD=${values[2]}
passphrase: ${values[3]}
    "ldap_bind_pass" => '${values[4]}',
[Security]
Passphrase=${values[5]}
min_pass_length = 12345678
smtp_pass_file = /run/secrets/smtp
allow_pass = false
bypass = ${password()}
`;
    expect(found(text, 'config-password')).toEqual(values);
  });

  it('a password after a quoted attribute name in Nix (`profiles.vpn."vpn-secrets".password`)', () => {
    const value = password();
    const text = `networking.networkmanager.ensureProfiles.profiles.vpn."vpn-secrets".password = "${value}";\n`;
    expect(found(text, 'nix-plaintext-password', true)).toEqual([value]);
  });

  it("iwd's network files: the passphrase and the pre-shared key are wifi-psk findings, each once", async () => {
    const passphrase = password(20);
    const psk = randomBytes(32).toString('hex');
    const findings = await treeFindings({
      'var/lib/iwd/Home Network.psk': `[Security]\nPassphrase=${passphrase}\nPreSharedKey=${psk}\n`,
      'var/lib/iwd/Open Cafe.open': '[Settings]\nAutoConnect=true\n',
      // Not iwd's: a `.psk` file without a [Security] section.
      'notes/readme.psk': '# Passphrase=… lives in the sops file\nsee secrets/wifi.yaml\n',
    });
    expect(findings).toEqual([
      ['var/lib/iwd/Home Network.psk', 'wifi-psk', 2],
      ['var/lib/iwd/Home Network.psk', 'wifi-psk', 3],
    ]);
  });
});

describe("rclone's obscured passwords", () => {
  it('finds pass, password and password2 in rclone.conf (obscuring is reversible); not elsewhere, not a short value', async () => {
    const obscured = () => randomBytes(16 + 12).toString('base64url');
    const [a, b, c] = [obscured(), obscured(), obscured()];
    const config = `[box]\ntype = sftp\nhost = box.lan\nuser = me\npass = ${a}\n\n[dav]\ntype = webdav\npassword = ${b}\n\n[crypt]\ntype = crypt\nremote = box:x\npassword2 = ${c}\n[short]\ntype = ftp\npass = abc\n`;
    expect(await treeFindings({ '.config/rclone/rclone.conf': config, 'notes/remotes.conf': config.replace(/password2? = .*\n/g, '') })).toEqual([
      ['.config/rclone/rclone.conf', 'rclone-password', 5],
      ['.config/rclone/rclone.conf', 'rclone-password', 9],
      ['.config/rclone/rclone.conf', 'rclone-password', 14],
    ]);
  });
});

describe('passwords NixOS writes into the store', () => {
  it("users-groups.json (minified JSON): initialPassword and password, not hashes, nulls or files", () => {
    const [a, b] = [password(), password()];
    const json = JSON.stringify({
      users: [
        { name: 'nixos', uid: 1000, initialPassword: a, hashedPassword: null, password: null, hashedPasswordFile: null },
        { name: 'op', password: b, initialHashedPassword: '$6$rounds=5000$saltsalt$0123456789abcdefABCDEF', passwordFile: '/run/secrets/op' },
      ],
      mutableUsers: true,
    });
    expect(found(json, 'config-password')).toEqual([a, b]);
    const hits = scanText(json, { operatorSecrets: [] }).filter((hit) => hit.rule === 'config-password');
    expect(hits.map((hit) => json.slice(hit.start, hit.end))).toEqual([a, b]);
    // OpenTofu's encrypted state: the key provider's salt and parameters under the passphrase's name.
    const kdf = Buffer.from(JSON.stringify({ salt: randomBytes(32).toString('base64'), iterations: 600000, hash_function: 'sha512', key_length: 32 })).toString('base64');
    expect(found(`{"serial":3,"meta":{"key_provider.pbkdf2.state_encryption_password":"${kdf}"},"encrypted_data":"${randomBytes(64).toString('base64')}"}`, 'config-password')).toEqual([]);
    // A key at the start of a line and the same key later on it: each value once.
    const pretty = `{\n  "password": "${a}", "db_password": "${b}"\n}\n`;
    expect(found(pretty, 'config-password')).toEqual([a, b]);
  });

  it("nginx basicAuth: each user's password, in .nix files; not basicAuthFile, empty or interpolated values", () => {
    const [a, b] = [password(), password()];
    const text = `{
  services.nginx.virtualHosts."x.lan".basicAuth = { admin = "${a}"; "bob.smith" = "${b}"; };
  services.nginx.virtualHosts."y.lan".locations."/".basicAuth = { guest = ""; ci = "\${secret}"; };
  services.nginx.virtualHosts."z.lan".basicAuthFile = "/run/secrets/htpasswd";
}
`;
    expect(found(text, 'nix-plaintext-password', true)).toEqual([a, b]);
    expect(found(text, 'nix-plaintext-password', false)).toEqual([]);
  });
});

describe("npm's and msmtp's config files", () => {
  it(".npmrc's _auth and _password (base64), msmtprc's password; not _authToken's reference, passwordeval, or the same lines under other names", async () => {
    const [a, b, c] = [password(), password(), password()];
    const npmrc = `registry=https://npm.corp.lan/\n//npm.corp.lan/:_auth=${Buffer.from(`deploy:${a}`).toString('base64')}\n//npm.corp.lan/:_password="${Buffer.from(b).toString('base64')}"\n//registry.npmjs.org/:_authToken=\${NPM_TOKEN}\n`;
    const msmtprc = `defaults\nauth on\naccount mail\nhost smtp.example.net\nuser me\npassword ${c}\naccount other\npasswordeval "pass show mail"\n`;
    expect(await treeFindings({ 'home/.npmrc': npmrc, 'etc/msmtprc': msmtprc, 'notes/npm.txt': npmrc, 'notes/mail.txt': msmtprc })).toEqual([
      ['etc/msmtprc', 'msmtp-password', 6],
      ['home/.npmrc', 'npm-auth', 2],
      ['home/.npmrc', 'npm-auth', 3],
    ]);
  });
});

describe("Gitea's PASSWD", () => {
  it('an INI key PASSWD (app.ini [mailer]) or …_PASSWD is a password; passwd: files (nsswitch) is not', () => {
    const [a, b] = [password(), password()];
    const text = `[mailer]\nENABLED = true\nPASSWD = ${a}\n[ldap]\nBIND_PASSWD=${b}\npasswd: files systemd\n`;
    expect(found(text, 'config-password')).toEqual([a, b]);
  });
});

describe("OpenVPN's auth-user-pass file", () => {
  it('finds the password of the two-line file NixOS writes for authUserPass (…-openvpn-credentials-<name>); not a one-line file, nor other names', async () => {
    const value = password();
    expect(await treeFindings({
      [`nix/store/${'a'.repeat(32)}-openvpn-credentials-office`]: `alice\n${value}\n`,
      [`nix/store/${'b'.repeat(32)}-openvpn-credentials-home`]: 'only-a-user-name\n',
      'notes/two-lines.txt': `alice\n${value}\n`,
    })).toEqual([[`nix/store/${'a'.repeat(32)}-openvpn-credentials-office`, 'openvpn-credentials', 2]]);
  });
});

describe("the mail clients' configs: mbsync, OfflineIMAP, fetchmail, mutt", () => {
  it('finds the plain passwords under their names and as store files; not the commands, the auth method, comments, or the same lines elsewhere', async () => {
    const [a, b, c, d, e] = [password(), password(), password(), password(), password()];
    const mbsyncrc = `IMAPAccount mail\nHost imap.example.net\nUser me\nPass ${a}\nIMAPAccount other\nPassCmd "pass show mail"\n`;
    const offlineimaprc = `[Repository remote]\ntype = IMAP\nremoteuser = me\nremotepass = ${b}\n[Repository other]\nremotepasseval = get_pass("other")\n`;
    const fetchmailrc = `# password '${password()}' was the old one\npoll imap.example.net proto imap auth password\n  user 'me' there with password '${c}' is me here\npoll pop.example.net user "me" pass ${d}\n`;
    const muttrc = `set imap_user = "me@example.net"\nset imap_pass = "${e}"\nset smtp_pass = \`pass show mail\`\n`;
    const store = `nix/store/${'c'.repeat(32)}-mbsyncrc`;
    expect(await treeFindings({
      'home/.mbsyncrc': mbsyncrc,
      [store]: mbsyncrc,
      'home/.offlineimaprc': offlineimaprc,
      'home/.fetchmailrc': fetchmailrc,
      'home/.muttrc': muttrc,
      'notes/mail.txt': mbsyncrc + offlineimaprc.replace('remotepass', 'remote') + fetchmailrc,
    })).toEqual([
      ['home/.fetchmailrc', 'fetchmail-password', 3],
      ['home/.fetchmailrc', 'fetchmail-password', 4],
      ['home/.mbsyncrc', 'mbsync-password', 4],
      ['home/.muttrc', 'config-password', 2],
      ['home/.offlineimaprc', 'offlineimap-password', 4],
      [store, 'mbsync-password', 4],
    ]);
  });
});

describe('passwords in the store files NixOS writes from literals: htpasswd, redis.conf, mount options, container scripts', () => {
  it('finds each, and not the hashed, referenced or credential-file forms beside them', async () => {
    const [a, b, c, d, e, f, g, h] = [password(), password(), password(), password(), password(), password(), password(), password()];
    const store = (name: string) => `nix/store/${'d'.repeat(32)}-${name}`;
    expect(await treeFindings({
      // services.nginx.virtualHosts.<name>.basicAuth
      [store('basicAuth.htpasswd')]: `alice:{PLAIN}${a}\nbob:$2y$05$${'x'.repeat(53)}\n`,
      // services.redis.servers.<name>.requirePass, settings.masterauth and an ACL user
      [store('redis.conf')]: `port 6379\nrequirepass ${b}\nmasterauth "${c}"\nuser app on >${d} ~* +@all\nuser ops on #${'e'.repeat(64)} ~* +@all\nuser default on nopass ~* +@all\n`,
      // Sentinel's password for the master it watches
      [store('sentinel.conf')]: `sentinel monitor main 10.0.0.2 6379 2\nsentinel auth-pass main ${h}\nsentinel down-after-milliseconds main 5000\n`,
      // fileSystems.<name>.options for a CIFS share, in fstab, a .mount unit and the Nix source
      [store('etc-fstab')]: `//nas/share /mnt/share cifs username=me,password=${e},uid=1000 0 0\n//nas/other /mnt/other cifs credentials=/run/secrets/smb 0 0\n`,
      'hosts/nas.nix': `{\n  fileSystems."/mnt/share" = {\n    device = "//nas/share";\n    fsType = "cifs";\n    options = [ "username=me" "password=${f}" ];\n  };\n  fileSystems."/mnt/b".options = [ "password=$SMB_PASSWORD" "credentials=/run/secrets/smb" ];\n}\n`,
      // virtualisation.oci-containers.containers.<name>.environment, as its script passes it to podman
      // Documentation: metavariables, examples and roff (manual pages of dirmngr, wget, pam.conf).
      'share/doc/options.txt': `ldap://host/dc=example,dc=com,password=PASSWORD\n--post-data \\*(Aquser=foo&password=bar\\*(Aq\nuser=admin&password=password123\n`,
      // Code beside the configuration: keyword arguments given references and names.
      'scripts/db.py': `conn = connect(\n    host=host,\n    password=os.environ["DB_ADMIN_PASSWORD"],\n    password=args.db_password,\n)\nconnect(password=current_value)\n`,
      // A log filter's redaction (badele/nix-homelab's vector rules).
      'hosts/vector.nix': `reduced = replace(reduced, r'[?&]password=[^&]*', "?password=[SENSITIVE]")\n`,
      [store('unit-script-podman-db-start/bin/podman-db-start')]: `#!/bin/sh\nexec podman run --rm --name db -e 'POSTGRES_PASSWORD=${g}' -e 'TZ=UTC' -e POSTGRES_USER=app postgres\n`,
    })).toEqual([
      ['hosts/nas.nix', 'option-password', 5],
      [store('basicAuth.htpasswd'), 'plain-scheme-password', 1],
      [store('etc-fstab'), 'option-password', 1],
      [store('redis.conf'), 'redis-password', 2],
      [store('redis.conf'), 'redis-password', 3],
      [store('redis.conf'), 'redis-password', 4],
      [store('sentinel.conf'), 'redis-password', 2],
      [store('unit-script-podman-db-start/bin/podman-db-start'), 'env-password', 2],
    ]);
  });
});

describe("mail relays' password maps and DNS TSIG keys", () => {
  it("finds Postfix's sasl_passwd, sSMTP's AuthPass and a TSIG key's secret (BIND, Knot), not their look-alikes", async () => {
    const [a, b] = [password(), password()];
    const tsig = randomBytes(32).toString('base64');
    const store = (name: string) => `nix/store/${'f'.repeat(32)}-${name}`;
    expect(await treeFindings({
      // services.postfix.mapFiles.sasl_passwd
      [store('sasl_passwd')]: `# relay\n[smtp.example.net]:587 me@example.net:${a}\n`,
      [store('etc-ssmtp.conf')]: `root=me@example.net\nmailhub=smtp.example.net:587\nAuthUser=me\nAuthPass=${b}\n`,
      [store('named.conf')]: `key "acme" {\n  algorithm hmac-sha256;\n  secret "${tsig}";\n};\noptions { directory "/run/named"; };\n`,
      [store('knot.conf')]: `key:\n  - id: acme\n    algorithm: hmac-sha256\n    secret: ${tsig}\n`,
      // A secret without an HMAC algorithm near it is something else; a TSIG key kept in a file is referenced.
      'notes/other.conf': `secret: ${randomBytes(32).toString('base64')}\n\n\n${'x'.repeat(400)}\nalgorithm: hmac-sha256\n`,
      [store('named-ref.conf')]: `include "/run/secrets/acme.key";\nkey "acme" { algorithm hmac-sha256; };\n`,
    })).toEqual([
      [store('etc-ssmtp.conf'), 'ssmtp-password', 4],
      [store('knot.conf'), 'tsig-secret', 4],
      [store('named.conf'), 'tsig-secret', 3],
      [store('sasl_passwd'), 'postfix-sasl-password', 2],
    ]);
  });
});

describe("other shells' session variables (home-manager writes home.sessionVariables for each)", () => {
  it("finds fish's set -gx, nushell's $env.NAME = and PowerShell's $env:NAME =; not commands or references", async () => {
    const token = `t${randomBytes(27).toString('base64').replace(/[+/=]/g, '')}9Z`;
    const pass = password();
    expect(await treeFindings({
      'home/.config/fish/conf.d/hm-session-vars.fish': `set -gx EDITOR nvim\nset -gx SERVICE_API_TOKEN "${token}"\nset --global --export DB_PASSWORD ${pass}\nset -gx GH_TOKEN (cat /run/secrets/gh)\nset -gx OTHER_TOKEN $GH_TOKEN\n`,
      'home/.config/nushell/env.nu': `$env.EDITOR = "nvim"\n$env.SERVICE_API_TOKEN = "${token}"\n$env.OTHER_TOKEN = (open ~/.token)\n`,
      'home/profile.ps1': `$env:SERVICE_API_TOKEN = "${token}"\n`,
    })).toEqual([
      ['home/.config/fish/conf.d/hm-session-vars.fish', 'env-token', 2],
      ['home/.config/fish/conf.d/hm-session-vars.fish', 'env-password', 3],
      ['home/.config/nushell/env.nu', 'env-token', 2],
      ['home/profile.ps1', 'env-token', 1],
    ]);
  });
});

describe("a container's -e and --env", () => {
  it('reads NAME=value after -e or --env, quoted or not, at its own offset', () => {
    const [a, b] = [password(), password()];
    const text = `exec podman run --rm -e TZ=UTC -e DB_PASSWORD=${a} --env=ADMIN_PASSWORD=${b} -e HOME_DIR=/data app\n`;
    expect(found(text, 'env-password')).toEqual([a, b]);
    const hits = scanText(text, { operatorSecrets: [], nixSource: false }).filter((hit) => hit.rule === 'env-password');
    for (const hit of hits) expect(text.slice(hit.start, hit.end)).toBe(hit.secret);
  });
});
