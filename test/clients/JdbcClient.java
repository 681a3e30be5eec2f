// The client matrix's JDBC driver: Debian's pgjdbc (/usr/share/java/postgresql.jar), run with the JDK's
// single-file source launcher:
//   java -cp /usr/share/java/postgresql.jar test/clients/JdbcClient.java --host H --port P --rootcert CA \
//        (--passfile FILE | --password PW) --checks require,verify-full,...
// Prints one JSON line: {"client": "jdbc", "version": ..., "checks": {NAME: {"ok": bool, "detail": str}}}.
// A check that fails is reported, never thrown; the exit code is 0 whenever the line was printed.
//
// Checks: require, verify-full, prefer (each: that sslmode, then pg_stat_ssl.ssl), scram (the right
// password logs in; the role's password is a SCRAM verifier), wrong-password (SQLState 28P01), extended
// (a parameterised PreparedStatement; one reused 300 times, which pgjdbc turns into a named server-side
// statement after prepareThreshold uses), copy (CopyManager, a few MB in and out), cancel
// (Statement.cancel() of pg_sleep(30) ends it with 57014).
//
// The password: with --passfile, pgjdbc reads the pgpass file itself (42.3+: its PgPassParser, told where
// by the system property org.postgresql.pgpassfile; it reads the PGPASSFILE environment variable too).
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class JdbcClient {
  static final int COPY_ROWS = 60_000; // about 4.5 MB of COPY text

  final Map<String, String> opts = new LinkedHashMap<>();

  String opt(String name, String fallback) {
    String value = opts.get(name);
    return value == null ? fallback : value;
  }

  public static void main(String[] argv) {
    JdbcClient client = new JdbcClient();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) throw new IllegalArgumentException("expected --name value, got " + argv[i]);
      client.opts.put(argv[i].substring(2), argv[i + 1]);
    }
    System.out.println(client.run());
  }

  String run() {
    Map<String, String[]> results = new LinkedHashMap<>();
    for (String name : opt("checks", "").split(",")) {
      if (name.isEmpty()) continue;
      String[] result;
      try {
        result = check(name);
      } catch (Exception e) {
        result = new String[] {"false", e.getClass().getSimpleName() + ": " + e.getMessage()};
      }
      results.put(name, result);
    }
    StringBuilder json = new StringBuilder();
    json.append("{\"client\":\"jdbc\",\"version\":")
        .append(quote("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + ", Java " + System.getProperty("java.version")))
        .append(",\"checks\":{");
    boolean first = true;
    for (Map.Entry<String, String[]> entry : results.entrySet()) {
      if (!first) json.append(',');
      first = false;
      json.append(quote(entry.getKey())).append(":{\"ok\":").append(entry.getValue()[0])
          .append(",\"detail\":").append(quote(entry.getValue()[1])).append('}');
    }
    return json.append("}}").toString();
  }

  String[] check(String name) throws Exception {
    switch (name) {
      case "require": case "verify-full": case "prefer": return sslmode(name);
      case "scram": return scram();
      case "wrong-password": return wrongPassword();
      case "extended": return extended();
      case "copy": return copy();
      case "cancel": return cancel();
      default: return result(false, "unknown check for jdbc");
    }
  }

  static String[] result(boolean ok, String detail) {
    return new String[] {String.valueOf(ok), detail};
  }

  Connection connect(String sslmode, String password) throws Exception {
    String url = "jdbc:postgresql://" + opt("host", "127.0.0.1") + ":" + opt("port", "5432") + "/" + opt("dbname", "postgres");
    Properties props = new Properties();
    props.setProperty("user", opt("user", "postgres"));
    if (password != null) props.setProperty("password", password);
    props.setProperty("sslmode", sslmode);
    props.setProperty("sslrootcert", opt("rootcert", ""));
    props.setProperty("connectTimeout", "10");
    props.setProperty("loginTimeout", "10");
    props.setProperty("socketTimeout", "60");
    props.setProperty("ApplicationName", "client-matrix-jdbc");
    return DriverManager.getConnection(url, props);
  }

  Connection connect() throws Exception {
    return connect(opt("sslmode", "verify-full"), password());
  }

  /** The password property: --password, or none so that pgjdbc looks it up in the pgpass file. */
  String password() {
    if (opts.containsKey("password")) return opts.get("password");
    String file = opt("passfile", null);
    if (file == null) throw new IllegalArgumentException("--password or --passfile is needed");
    System.setProperty("org.postgresql.pgpassfile", file);
    return null;
  }

  static String sslState(Connection conn) throws SQLException {
    try (Statement st = conn.createStatement();
         ResultSet rs = st.executeQuery("SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) {
      rs.next();
      return rs.getBoolean(1) + " " + rs.getString(2) + " " + rs.getString(3);
    }
  }

  String[] sslmode(String mode) throws Exception {
    try (Connection conn = connect(mode, password())) {
      String state = sslState(conn);
      return result(state.startsWith("true"), "sslmode=" + mode + ": pg_stat_ssl.ssl=" + state);
    }
  }

  String[] scram() throws Exception {
    try (Connection conn = connect();
         Statement st = conn.createStatement();
         ResultSet rs = st.executeQuery("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = current_user")) {
      rs.next();
      String verifier = rs.getString(1);
      return result("SCRAM-SHA-256$".equals(verifier),
          "logged in with the lab password (ssl=" + sslState(conn).split(" ")[0] + "); role verifier '" + verifier + "'");
    }
  }

  String[] wrongPassword() throws Exception {
    try (Connection conn = connect(opt("sslmode", "verify-full"), "wrong-" + opt("port", ""))) {
      return result(false, "a wrong password was accepted");
    } catch (SQLException e) {
      boolean ok = "28P01".equals(e.getSQLState()) && e.getMessage().contains("password authentication failed");
      return result(ok, "refused: sqlstate=" + e.getSQLState() + " " + e.getMessage());
    }
  }

  String[] extended() throws Exception {
    try (Connection conn = connect()) {
      try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int + ?::int AS sum, ?::text AS t")) {
        ps.setInt(1, 2);
        ps.setInt(2, 3);
        ps.setString(3, "matrix");
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          if (rs.getInt(1) != 5 || !"matrix".equals(rs.getString(2))) return result(false, "parameterised query returned " + rs.getInt(1) + ", " + rs.getString(2));
        }
      }
      long total = 0;
      boolean serverPrepared;
      try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int * 2")) {
        for (int i = 0; i < 300; i++) {
          ps.setInt(1, i);
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            total += rs.getInt(1);
          }
        }
        serverPrepared = ps.unwrap(PGStatement.class).isUseServerPrepare();
        int prepared;
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql AND statement LIKE 'SELECT $1::int * 2%'")) {
          rs.next();
          prepared = rs.getInt(1);
        }
        boolean ok = total == 2L * (299 * 300 / 2) && serverPrepared && prepared == 1;
        return result(ok, "parameterised query ok; 300 executions, server-side prepared after prepareThreshold=" + ps.unwrap(PGStatement.class).getPrepareThreshold()
            + " (isUseServerPrepare " + serverPrepared + ", pg_prepared_statements: " + prepared + "), sum " + total);
      }
    }
  }

  String[] copy() throws Exception {
    StringBuilder text = new StringBuilder();
    String pad = "x".repeat(48);
    for (int i = 0; i < COPY_ROWS; i++) text.append(i).append('\t').append(String.format("jdbc row %08d ", i)).append(pad).append('\n');
    byte[] payload = text.toString().getBytes(StandardCharsets.UTF_8);
    try (Connection conn = connect()) {
      try (Statement st = conn.createStatement()) {
        st.execute("CREATE TEMP TABLE matrix_copy (id int, payload text)");
      }
      CopyManager copy = conn.unwrap(PGConnection.class).getCopyAPI();
      long started = System.nanoTime();
      long rowsIn = copy.copyIn("COPY matrix_copy FROM STDIN", new ByteArrayInputStream(payload));
      ByteArrayOutputStream out = new ByteArrayOutputStream(payload.length);
      long rowsOut = copy.copyOut("COPY matrix_copy TO STDOUT", out);
      double seconds = (System.nanoTime() - started) / 1e9;
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      boolean same = Arrays.equals(sha.digest(payload), MessageDigest.getInstance("SHA-256").digest(out.toByteArray()));
      return result(rowsIn == COPY_ROWS && rowsOut == COPY_ROWS && same,
          String.format("%.1f MB in (%d rows) and out (%d rows, identical: %s) in %.2f s", payload.length / 1e6, rowsIn, rowsOut, same, seconds));
    }
  }

  String[] cancel() throws Exception {
    try (Connection conn = connect(); Statement st = conn.createStatement()) {
      long[] cancelledAt = {0};
      Thread canceller = new Thread(() -> {
        try {
          Thread.sleep(500);
          cancelledAt[0] = System.nanoTime();
          st.cancel();
        } catch (Exception ignored) {
          // the check below reports what happened
        }
      });
      canceller.start();
      try {
        st.execute("SELECT pg_sleep(30)");
        return result(false, "pg_sleep(30) was not cancelled");
      } catch (SQLException e) {
        double elapsed = (System.nanoTime() - cancelledAt[0]) / 1e9;
        boolean ok = "57014".equals(e.getSQLState()) && cancelledAt[0] != 0 && elapsed < 3;
        return result(ok, String.format("Statement.cancel(): %s %s %.2f s after the cancel", e.getSQLState(), e.getMessage(), elapsed));
      } finally {
        canceller.join(5000);
      }
    }
  }

  static String quote(String s) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : (s == null ? "null" : s).toCharArray()) {
      switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\n': out.append("\\n"); break;
        case '\r': out.append("\\r"); break;
        case '\t': out.append("\\t"); break;
        default:
          if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
          else out.append(c);
      }
    }
    return out.append('"').toString();
  }
}
