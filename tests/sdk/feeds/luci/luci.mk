# Stand-in for the LuCI feed's luci.mk: the package is named after its
# directory, htdocs/ installs under /www and root/ under /, and the LUCI_*
# variables become the package's fields.
PKG_NAME?=$(notdir $(CURDIR))
PKG_RELEASE?=1
include $(INCLUDE_DIR)/package.mk

define Package/$(PKG_NAME)
  SECTION:=luci
  CATEGORY:=LuCI
  TITLE:=$(LUCI_TITLE)
  DEPENDS:=$(LUCI_DEPENDS)
  PKGARCH:=$(LUCI_PKGARCH)
endef

define Package/$(PKG_NAME)/install
	if [ -d $(CURDIR)/htdocs ]; then $(INSTALL_DIR) $(1)/www; cp -pR $(CURDIR)/htdocs/* $(1)/www/; fi
	if [ -d $(CURDIR)/root ]; then $(INSTALL_DIR) $(1)/; cp -pR $(CURDIR)/root/* $(1)/; fi
endef

$(eval $(call BuildPackage,$(PKG_NAME)))
