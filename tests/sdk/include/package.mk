# Stand-in for the SDK's include/package.mk: BuildPackage runs the
# package's install block into $(DESTDIR) and writes what the control file
# and maintainer scripts are made from into $(INFODIR): the package's
# fields, conffiles, postinst and prerm, as make expands them. As in the
# SDK (include/package-defaults.mk), each package's fields start from
# Package/Default, so one package's PROVIDES do not leak into the next.
define Package/Default
  SECTION:=opt
  CATEGORY:=Extra packages
  DEPENDS:=
  PROVIDES:=
  CONFLICTS:=
  PKGARCH:=
  USERID:=
endef

define BuildPackage
$(eval $(Package/Default))
$(eval $(Package/$(1)))
dirs-$(1):
	rm -rf $(DESTDIR) $(INFODIR)
	mkdir -p $(DESTDIR) $(INFODIR)
install-$(1): dirs-$(1)
	$$(call Package/$(1)/install,$(DESTDIR))
	$$(file >$(INFODIR)/vars,PKG_NAME=$(PKG_NAME)$$(newline)PKG_VERSION=$(PKG_VERSION)$$(newline)PKG_RELEASE=$(PKG_RELEASE)$$(newline)PKG_LICENSE=$(PKG_LICENSE)$$(newline)PKG_MAINTAINER=$(PKG_MAINTAINER)$$(newline)SECTION=$(SECTION)$$(newline)CATEGORY=$(CATEGORY)$$(newline)DEPENDS=$(DEPENDS)$$(newline)PROVIDES=$(PROVIDES)$$(newline)CONFLICTS=$(CONFLICTS)$$(newline)PKGARCH=$(PKGARCH)$$(newline)USERID=$(USERID))
	$$(if $$(Package/$(1)/conffiles),$$(file >$(INFODIR)/conffiles,$$(Package/$(1)/conffiles)))
	$$(if $$(Package/$(1)/postinst),$$(file >$(INFODIR)/postinst,$$(Package/$(1)/postinst)))
	$$(if $$(Package/$(1)/prerm),$$(file >$(INFODIR)/prerm,$$(Package/$(1)/prerm)))
endef

define newline


endef
