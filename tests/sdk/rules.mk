# Stand-in for the OpenWrt SDK's rules.mk: only what a script package's
# Makefile uses, with the values rules.mk gives them.
INCLUDE_DIR:=$(TOPDIR)/include
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
CP:=cp -fpR
LN:=ln -sf
