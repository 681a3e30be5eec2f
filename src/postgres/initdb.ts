// initdb's arguments, the same for a host process and a one-off container: the lab's superuser, no
// locale, UTF8, and either trust or scram-sha-256 with the lab's password read from a file (initdb
// then also sets password_encryption = scram-sha-256, which PostgreSQL 11 to 13 do not by default).
export function initdbArgs(datadir: string, dbUser: string, pwfile: string | undefined): string[] {
  const auth = pwfile ? ['--auth-host=scram-sha-256', '--auth-local=scram-sha-256', `--pwfile=${pwfile}`] : ['-A', 'trust'];
  return ['-D', datadir, '-U', dbUser, '--no-locale', '-E', 'UTF8', ...auth];
}
