<%-- The tests' window into what the bank executed: the ledger as a JSON array. --%><%@ page contentType="application/json; charset=UTF-8" import="java.util.List"
%><% response.setHeader("Cache-Control", "no-store");
synchronized (application) {
    @SuppressWarnings("unchecked")
    List<String> ledger = (List<String>) application.getAttribute("bank.ledger");
    out.print("[" + (ledger == null ? "" : String.join(",\n", ledger)) + "]\n");
} %>
