<%--
  The demo bank's contract (internal/demobank) as a legacy Java site would have
  written it, for Apache Tomcat's own Jasper to compile: no build step.

  It is one servlet, written as a JSP declaration. It overrides
  service(ServletRequest, ServletResponse) because a JSP page answers 405 to
  PUT, PATCH and DELETE, and the legacy servlets it stands for implemented
  doPut and doDelete by executing the operation. Everything it reads, it reads
  through the Servlet API as Tomcat gives it: the servlet path Tomcat's mapper
  chose (web.xml maps each endpoint), getParameter (query and body as the
  connector's parseBodyMethods and the context's multipart settings allow),
  getPart, the HttpSession (cookie or ;jsessionid=).

  Every executed operation is appended to a ledger (a ServletContext
  attribute) that /ledger.jsp prints as JSON.
--%><%@ page pageEncoding="UTF-8" import="java.io.*,java.security.MessageDigest,java.util.*,jakarta.servlet.*,jakarta.servlet.http.*"
%><%!
    // The demo bank's users: service ID, user ID, password.
    private static final String[][] USERS = {
        {"S001", "U001", "demo"},
        {"S001", "U002", "demo"},
        {"S002", "U101", "demo"},
    };

    // Methods an HttpServlet dispatches to a doXxx that executes the operation.
    private static final Set<String> EXECUTING = Set.of("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE");

    // Method overrides, read in this order before the _method parameter.
    private static final String[] OVERRIDES = {"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"};

    public static final String LEDGER = "bank.ledger";

    @Override
    public void service(ServletRequest sreq, ServletResponse sres) throws ServletException, IOException {
        HttpServletRequest req = (HttpServletRequest) sreq;
        HttpServletResponse res = (HttpServletResponse) sres;
        // Tomcat's SetCharacterEncodingFilter as legacy sites configured it:
        // UTF-8 unless the request names its charset.
        if (req.getCharacterEncoding() == null) {
            req.setCharacterEncoding("UTF-8");
        }
        res.setHeader("Cache-Control", "no-store");
        // Exact mappings give the whole path here; "/otp/*" and "/token/*" give
        // "/otp" and "/token" and the rest in getPathInfo().
        String route = req.getServletPath();
        switch (route) {
        case "/login":
            login(req, res);
            return;
        case "/logout":
            HttpSession s = req.getSession(false);
            if (s != null) {
                s.invalidate();
            }
            res.sendRedirect("/login");
            return;
        case "/menu":
            menu(req, res);
            return;
        case "/transfer/execute":
            execute(req, res, "transfer", "", "to_bank", "to_account", "amount");
            return;
        case "/payment/execute":
            execute(req, res, "bill_payment", "", "payee", "amount");
            return;
        case "/bulk/execute":
            execute(req, res, "bulk_transfer", "bulk", "file");
            return;
        case "/payroll/execute":
            execute(req, res, "bulk_transfer", "payroll", "file");
            return;
        case "/profile/update":
            execute(req, res, "user_change", "", "email", "phone");
            return;
        case "/otp":
        case "/token":
            // Any token page executes: issue, revoke, reset, ... as a legacy token servlet.
            execute(req, res, "token_management", "");
            return;
        default:
            res.sendError(404);
        }
    }

    // login reads its fields on any method and from wherever getParameter
    // finds them, as legacy login servlets did: GET /login?service_id=... logs in.
    private void login(HttpServletRequest req, HttpServletResponse res) throws IOException {
        String service = req.getParameter("service_id");
        String user = req.getParameter("user_id");
        String password = req.getParameter("password");
        if (service == null && user == null && password == null) {
            page(res, 200, "ログイン",
                "<form method=\"post\" action=\"/login\">"
                + "<input name=\"service_id\"><input name=\"user_id\"><input name=\"password\" type=\"password\">"
                + "<button>ログイン</button></form>");
            return;
        }
        for (String[] u : USERS) {
            if (u[0].equals(service) && u[1].equals(user) && u[2].equals(password)) {
                // A fresh session on every login (no fixation), as the demo bank does.
                HttpSession old = req.getSession(false);
                if (old != null) {
                    old.invalidate();
                }
                HttpSession s = req.getSession(true);
                s.setAttribute("service", u[0]);
                s.setAttribute("user", u[1]);
                res.sendRedirect("/menu");
                return;
            }
        }
        page(res, 200, "ログイン", "<p>サービスID、利用者ID、またはパスワードが正しくありません。</p>");
    }

    private void menu(HttpServletRequest req, HttpServletResponse res) throws IOException {
        HttpSession s = req.getSession(false);
        if (s == null || s.getAttribute("user") == null) {
            res.sendRedirect("/login");
            return;
        }
        page(res, 200, "メニュー", "<p>" + esc(s.getAttribute("service") + "/" + s.getAttribute("user")) + "</p>"
            + "<form method=\"post\" action=\"/transfer/execute\"><input name=\"to_bank\"><input name=\"to_account\"><input name=\"amount\"><button>振込</button></form>"
            + "<form method=\"post\" action=\"/payment/execute\"><input name=\"payee\"><input name=\"amount\"><button>払込</button></form>"
            + "<form method=\"post\" action=\"/bulk/execute\" enctype=\"multipart/form-data\"><input type=\"file\" name=\"file\"><button>総合振込</button></form>"
            + "<form method=\"post\" action=\"/payroll/execute\" enctype=\"multipart/form-data\"><input type=\"file\" name=\"file\"><button>給与振込</button></form>"
            + "<form method=\"post\" action=\"/profile/update\"><input name=\"email\"><input name=\"phone\"><button>変更</button></form>"
            + "<form method=\"post\" action=\"/token/revoke\"><button>トークン失効</button></form>");
    }

    private void execute(HttpServletRequest req, HttpServletResponse res, String op, String kind, String... fields)
            throws IOException, ServletException {
        HttpSession s = req.getSession(false);
        if (s == null || s.getAttribute("user") == null) {
            res.sendRedirect("/login");
            return;
        }
        String method = effectiveMethod(req);
        if (!EXECUTING.contains(method)) {
            res.setHeader("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE");
            res.sendError(405);
            return;
        }
        StringBuilder params = new StringBuilder();
        List<String> missing = new ArrayList<>();
        for (String f : fields) {
            if (f.equals("file")) {
                Part p = filePart(req, f);
                if (p == null) {
                    missing.add(f);
                    continue;
                }
                field(params, "file", p.getSubmittedFileName());
                field(params, "file_size", Long.toString(p.getSize()));
                field(params, "file_sha256", sha256(p));
                continue;
            }
            String v = req.getParameter(f);
            if (v == null || v.trim().isEmpty()) {
                missing.add(f);
            }
        }
        if (!missing.isEmpty()) {
            page(res, 400, "入力エラー", "<p>未入力の項目があります: " + esc(String.join(", ", missing)) + "</p>");
            return;
        }
        for (Map.Entry<String, String[]> e : new TreeMap<>(req.getParameterMap()).entrySet()) {
            // _method chose the method; an uploaded file wins over a plain field of its name.
            if (!e.getKey().equals("_method") && !(fields.length == 1 && fields[0].equals("file") && e.getKey().startsWith("file"))) {
                field(params, e.getKey(), e.getValue()[0]);
            }
        }
        if (!kind.isEmpty()) {
            field(params, "kind", kind);
        }
        String receipt;
        synchronized (getServletContext()) {
            @SuppressWarnings("unchecked")
            List<String> ledger = (List<String>) getServletContext().getAttribute(LEDGER);
            if (ledger == null) {
                ledger = new ArrayList<>();
                getServletContext().setAttribute(LEDGER, ledger);
            }
            receipt = String.format("R%06d", ledger.size() + 1);
            String path = req.getServletPath() + (req.getPathInfo() == null ? "" : req.getPathInfo());
            ledger.add("{" + json("receipt") + ":" + json(receipt)
                + "," + json("op") + ":" + json(op)
                + "," + json("service") + ":" + json((String) s.getAttribute("service"))
                + "," + json("user") + ":" + json((String) s.getAttribute("user"))
                + "," + json("method") + ":" + json(method)
                + "," + json("path") + ":" + json(path)
                + "," + json("uri") + ":" + json(req.getRequestURI())
                + "," + json("probe") + ":" + json(req.getHeader("X-Probe"))
                + "," + json("params") + ":{" + params + "}}");
        }
        page(res, 200, "完了", "<p>受付番号 " + receipt + "</p>");
    }

    // filePart is the first uploaded file of that name, or null when the
    // request has none (not multipart, or multipart not enabled here).
    private static Part filePart(HttpServletRequest req, String name) throws IOException {
        try {
            for (Part p : req.getParts()) {
                String fn = p.getSubmittedFileName();
                if (name.equals(p.getName()) && fn != null && !fn.isEmpty()) {
                    return p;
                }
            }
        } catch (IllegalStateException | ServletException e) {
            // No multipart config, or a body Tomcat could not parse as multipart.
        }
        return null;
    }

    private static String effectiveMethod(HttpServletRequest req) {
        for (String h : OVERRIDES) {
            String v = req.getHeader(h);
            if (v != null && !v.trim().isEmpty()) {
                return v.trim().toUpperCase(Locale.ROOT);
            }
        }
        String v = req.getParameter("_method");
        if (v != null && !v.trim().isEmpty()) {
            return v.trim().toUpperCase(Locale.ROOT);
        }
        return req.getMethod().toUpperCase(Locale.ROOT);
    }

    private static String sha256(Part p) throws IOException {
        try (InputStream in = p.getInputStream()) {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0;) {
                md.update(buf, 0, n);
            }
            return HexFormat.of().formatHex(md.digest());
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IOException(e);
        }
    }

    private static void field(StringBuilder b, String name, String value) {
        if (b.length() > 0) {
            b.append(',');
        }
        b.append(json(name)).append(':').append(json(value));
    }

    public static String json(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20 || c == 0x7f || (c >= 0x2028 && c <= 0x2029)) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }

    private static void page(HttpServletResponse res, int status, String title, String body) throws IOException {
        res.setStatus(status);
        res.setContentType("text/html; charset=UTF-8");
        PrintWriter w = res.getWriter();
        w.print("<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"UTF-8\"><title>" + esc(title)
            + "</title></head><body><h1>" + esc(title) + "</h1>" + body + "</body></html>");
    }
%>
