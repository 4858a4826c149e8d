// PgJDBC (the driver Metabase and most JVM tools use) against `strata serve --pg`:
// DatabaseMetaData's schemas, tables, columns and primary keys, a prepared statement with a
// parameter, and a refused write. Usage: java -cp postgresql.jar JdbcClient.java HOST PORT USER PASSWORD DATABASE
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void check(String name, Object got, Object expected) {
        if (!Objects.equals(got, expected)) {
            System.out.println("FAIL " + name + ": got " + got + ", expected " + expected);
            System.exit(1);
        }
        System.out.println("ok " + name);
    }

    public static void main(String[] a) throws Exception {
        String url = "jdbc:postgresql://" + a[0] + ":" + a[1] + "/" + a[4];
        try (Connection c = DriverManager.getConnection(url, a[2], a[3])) {
            DatabaseMetaData md = c.getMetaData();
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            check("getSchemas has gold", schemas.contains("gold"), true);
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "gold", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            Collections.sort(tables);
            check("getTables", tables, List.of("customers", "orders"));
            Map<String, String> columns = new LinkedHashMap<>();
            try (ResultSet rs = md.getColumns(null, "gold", "orders", "%")) {
                while (rs.next()) columns.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
            }
            check("getColumns order_id", columns.get("order_id"), "int8");
            check("getColumns order_date", columns.get("order_date"), "date");
            check("getColumns status", columns.get("status"), "text");
            int keys = 0;
            try (ResultSet rs = md.getPrimaryKeys(null, "gold", "orders")) {
                while (rs.next()) keys++;
            }
            check("getPrimaryKeys", keys, 0);
            try (PreparedStatement ps = c.prepareStatement("select count(*) from gold.orders where customer_id = ?")) {
                ps.setLong(1, 14);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    check("prepared statement with a parameter", rs.getLong(1) > 0, true);
                }
            }
            try (Statement s = c.createStatement()) {
                s.execute("drop table gold.orders");
                check("drop refused", "accepted", "refused");
            } catch (SQLException e) {
                check("drop refused with 25006", e.getSQLState(), "25006");
            }
        }
        System.out.println("all clients passed");
    }
}
