'use strict';
'require view';
'require form';

/*
 * Settings: a form over /etc/config/spin (section 'main'). Save & Apply
 * goes through rpcd's uci apply; the init script's reload trigger then
 * sends the agent a HUP, which re-reads the file and keeps the history.
 * Only the options an owner may want to change are here; the rest keep
 * the defaults documented in the file itself.
 */

return view.extend({
	render: function() {
		var m, s, o;

		m = new form.Map('spin', _('spin-lite settings'),
			_('How often the router looks at its connections, how blocks are enforced, and how much it remembers.'));

		s = m.section(form.NamedSection, 'main', 'spin', _('Watching'));

		o = s.option(form.Flag, 'enabled', _('Enabled'),
			_('Off stops the agent and removes its firewall rules; the history is lost.'));
		o.default = '1';
		o.rmempty = false;

		o = s.option(form.Value, 'scan_interval', _('Scan interval'),
			_('Seconds between two reads of the connection table. Shorter catches short connections and stops scans sooner, at more CPU.'));
		o.datatype = 'range(1,300)';
		o.placeholder = '5';

		o = s.option(form.Value, 'lan_ifname', _('LAN interface'),
			_('The addresses on this interface decide which hosts are devices.'));
		o.placeholder = 'br-lan';

		o = s.option(form.Flag, 'dns_snoop', _('Learn names from DNS'),
			_('Read the answers to the devices\' DNS questions, so destinations show as names instead of numbers.'));
		o.default = '1';
		o.rmempty = false;

		s = m.section(form.NamedSection, 'main', 'spin', _('Blocking'));

		o = s.option(form.ListValue, 'firewall', _('Firewall'),
			_('How blocks and quarantines are enforced.'));
		o.value('auto', _('Automatic (nftables with firewall4, else iptables)'));
		o.value('nft', _('nftables'));
		o.value('iptables', _('iptables and ipset'));
		o.value('none', _('None: only watch'));
		o.default = 'auto';

		s = m.section(form.NamedSection, 'main', 'spin', _('Memory'));

		o = s.option(form.Value, 'max_devices', _('Devices kept'),
			_('When full, the device unseen for longest is forgotten.'));
		o.datatype = 'range(1,65535)';
		o.placeholder = '512';

		o = s.option(form.Value, 'top_remotes', _('Destinations kept per minute'),
			_('Per device and per minute of history, the destinations with the most traffic.'));
		o.datatype = 'range(1,50)';
		o.placeholder = '3';

		o = s.option(form.Value, 'max_endpoints', _('Destination names kept'),
			_('Addresses with their DNS names; the least recently used are dropped first.'));
		o.datatype = 'range(16,1000000)';
		o.placeholder = '4096';

		return m.render();
	}
});
