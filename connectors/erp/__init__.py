"""ERP connectors: database (SQLAlchemy), SOAP and REST sources of vouchers (记账凭证)."""
