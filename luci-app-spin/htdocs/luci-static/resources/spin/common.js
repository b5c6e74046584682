'use strict';
'require baseclass';

/*
 * What every spin view shares that is not drawing: numbers for people,
 * the block/quarantine state of a device or address, endpoints grouped by
 * the domain their owner registered, and failed calls said in words.
 *
 * The agent pre-aggregates (graph, devices, blocks); this module only
 * joins those replies, so the browser does little work per scan.
 */

var UNITS = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ];

/* second-level labels under which a ccTLD registers names (bbc.co.uk);
 * the same heuristic as the agent's domains.py, so both group alike */
var GENERIC_SECOND = [ 'ac', 'co', 'com', 'edu', 'gob', 'go', 'gov', 'govt', 'ltd', 'me',
	'mil', 'ne', 'net', 'nhs', 'nic', 'nom', 'or', 'org', 'plc', 'sch', 'web' ];

/* a device first seen this recently is "new" */
var NEW_SECONDS = 3600;

function ipv4Number(ip) {
	var p = ip.split('.');
	if (p.length != 4)
		return null;
	var n = 0;
	for (var i = 0; i < 4; i++) {
		var v = +p[i];
		if (!(v >= 0 && v <= 255) || p[i] === '')
			return null;
		n = n * 256 + v;
	}
	return n;
}

function ipv6Words(ip) {
	if (ip.indexOf(':') < 0)
		return null;
	var halves = ip.split('::');
	var left = halves[0] ? halves[0].split(':') : [];
	var right = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
	var words = left.slice();
	for (var i = left.length + right.length; i < 8; i++)
		words.push('0');
	words = words.concat(right);
	return words.map(function(w) { return parseInt(w, 16) || 0; });
}

/* does address ip fall inside remote (an address or a CIDR prefix)? */
function covers(remote, ip) {
	var parts = String(remote).split('/');
	if (parts.length == 1)
		return parts[0] == ip;
	var bits = +parts[1];
	var a = ipv4Number(parts[0]), b = ipv4Number(ip);
	if (a != null && b != null) {
		var size = Math.pow(2, 32 - bits);
		return Math.floor(a / size) == Math.floor(b / size);
	}
	var wa = ipv6Words(parts[0]), wb = ipv6Words(ip);
	if (!wa || !wb)
		return false;
	for (var i = 0; i < 8 && bits > 0; i++, bits -= 16) {
		var shift = Math.max(0, 16 - bits);
		if ((wa[i] >> shift) != (wb[i] >> shift))
			return false;
	}
	return true;
}

function registrable(name) {
	name = String(name || '').toLowerCase().replace(/\.$/, '');
	if (!name || name.indexOf(':') >= 0 || /^[0-9.]+$/.test(name))
		return name;
	var labels = name.split('.');
	var n = labels.length;
	if (n < 3)
		return name;
	if (labels[n - 1].length == 2 && GENERIC_SECOND.indexOf(labels[n - 2]) >= 0)
		return labels.slice(-3).join('.');
	return labels.slice(-2).join('.');
}

return baseclass.extend({
	NEW_SECONDS: NEW_SECONDS,

	bytes: function(n) {
		n = +n || 0;
		var i = 0;
		while (n >= 1024 && i < UNITS.length - 1) {
			n /= 1024;
			i++;
		}
		return (i == 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 1 : 0)) + '\u202f' + UNITS[i];
	},

	rate: function(n) {
		return this.bytes(n) + '/s';
	},

	ago: function(ts, now) {
		var s = Math.max(0, Math.round((now || Date.now() / 1000) - ts));
		if (s < 60)
			return _('%d s ago').format(s);
		if (s < 3600)
			return _('%d min ago').format(Math.floor(s / 60));
		if (s < 86400)
			return _('%d h ago').format(Math.floor(s / 3600));
		return _('%d days ago').format(Math.floor(s / 86400));
	},

	/* an expiry timestamp (or none) as people read it */
	until: function(ts, now) {
		if (!ts)
			return _('never');
		var s = Math.round(ts - (now || Date.now() / 1000));
		if (s <= 0)
			return _('now');
		if (s < 3600)
			return _('in %d min').format(Math.ceil(s / 60));
		if (s < 86400)
			return _('in %d h').format(Math.round(s / 3600));
		return new Date(ts * 1000).toLocaleString();
	},

	registrable: registrable,
	covers: covers,

	/*
	 * The spin methods this router has, from rpc.list('spin'): actions
	 * whose method is missing are not offered. Should the list itself be
	 * unavailable (an old LuCI ubus proxy), offer the actions every
	 * spin-lite has had, and let a failing call say so in words.
	 */
	methods: function(listing) {
		var sig = listing && listing.spin;
		if (sig && typeof(sig) == 'object' && Object.keys(sig).length)
			return Object.keys(sig);
		return [ 'status', 'devices', 'graph', 'history', 'blocks', 'block', 'unblock',
			'quarantine', 'release', 'allow', 'disallow' ];
	},

	deviceLabel: function(d) {
		return d.name || d.hostname || d.mac;
	},

	/*
	 * The block listing turned into lookups: whole-device blocks by MAC,
	 * quarantines by MAC, and blocks of a remote for everyone.
	 */
	blockIndex: function(listing) {
		var idx = { device: {}, quarantine: {}, remote: [], pair: {} };
		var blocks = (listing && listing.blocks) || [];
		for (var i = 0; i < blocks.length; i++) {
			var b = blocks[i];
			var whole = !b.remote && !b.port && !b.proto;
			if (b.mac && whole)
				idx.device[b.mac] = b;
			else if (!b.mac && !b.ip && b.remote && !b.port && !b.proto)
				idx.remote.push(b);
			else if (b.mac && b.remote && !b.port && !b.proto)
				(idx.pair[b.mac] = idx.pair[b.mac] || []).push(b);
		}
		var qs = (listing && listing.quarantines) || [];
		for (var j = 0; j < qs.length; j++)
			idx.quarantine[qs[j].mac] = qs[j];
		return idx;
	},

	/* the blocks of one device to any of these addresses */
	pairBlocks: function(idx, mac, ips) {
		return (idx.pair[mac] || []).filter(function(b) {
			return ips.some(function(ip) { return covers(b.remote, ip); });
		});
	},

	remoteBlock: function(idx, ip) {
		for (var i = 0; i < idx.remote.length; i++)
			if (covers(idx.remote[i].remote, ip))
				return idx.remote[i];
		return null;
	},

	deviceState: function(d, idx, now) {
		if (idx.quarantine[d.mac])
			return 'quarantined';
		if (idx.device[d.mac])
			return 'blocked';
		if (d.first_seen && (now || Date.now() / 1000) - d.first_seen < NEW_SECONDS)
			return 'new';
		return 'normal';
	},

	/* why a device is quarantined or blocked and until when, as text
	 * for a line under its state ('' for a device that is neither) */
	stateDetail: function(d, idx, now) {
		var rec = idx.quarantine[d.mac] || idx.device[d.mac];
		if (!rec)
			return '';
		var why = idx.quarantine[d.mac] ? rec.reason : rec.note;
		var parts = [];
		if (why)
			parts.push(why);
		parts.push(_('ends %s').format(this.until(rec.expires, now)));
		return parts.join('; ');
	},

	stateText: function(state) {
		return {
			quarantined: _('Quarantined'),
			blocked: _('Blocked'),
			'new': _('New'),
			normal: _('Normal')
		}[state] || state;
	},

	/* the name an endpoint node is known by, if the agent has one */
	endpointName: function(n) {
		if (n.name)
			return n.name;
		if (Array.isArray(n.names) && n.names.length)
			return n.names[0];
		return null;
	},

	/* the group an endpoint belongs to: its registrable domain, else itself */
	endpointGroup: function(n) {
		if (n.domain)
			return n.domain;
		var name = this.endpointName(n);
		return name ? registrable(name) : n.id;
	},

	/*
	 * The picture to draw, from the agent's graph, device list and blocks:
	 *  - every device is a node, also one without traffic;
	 *  - endpoints are grouped by registrable domain;
	 *  - only the `maxGroups` heaviest groups are drawn (those with a block
	 *    first), the rest are folded into one "other" node;
	 *  - `filter` (text) keeps devices and groups whose name, MAC, address
	 *    or domain contains it, with what they talk to.
	 */
	model: function(graph, devices, listing, opts) {
		opts = opts || {};
		var maxGroups = opts.maxGroups || 40;
		var filter = String(opts.filter || '').trim().toLowerCase();
		var now = opts.now || Date.now() / 1000;
		var idx = this.blockIndex(listing);
		var byMac = {}, nodes = [], i;

		for (i = 0; i < devices.length; i++)
			byMac[devices[i].mac] = devices[i];
		var gnodes = (graph && graph.nodes) || [];
		for (i = 0; i < gnodes.length; i++)
			if (gnodes[i].kind == 'device' && !byMac[gnodes[i].id])
				byMac[gnodes[i].id] = { mac: gnodes[i].id, name: gnodes[i].name, ips: gnodes[i].ips || [] };

		var endpoints = {};
		for (i = 0; i < gnodes.length; i++)
			if (gnodes[i].kind == 'endpoint')
				endpoints[gnodes[i].id] = gnodes[i];

		/* group endpoints, summing bytes per group and per device-group pair */
		var groups = {}, pairs = {};
		var edges = (graph && graph.edges) || [];
		for (i = 0; i < edges.length; i++) {
			var e = edges[i];
			if (!byMac[e.from])
				continue;
			var ep = endpoints[e.to] || { id: e.to };
			var key = this.endpointGroup(ep);
			var g = groups[key];
			if (!g)
				g = groups[key] = { id: 'g:' + key, key: key, kind: 'group', bytes: 0,
					members: [], names: [], blocked: null, kept: false };
			g.bytes += e.bytes;
			if (g.members.indexOf(e.to) < 0) {
				g.members.push(e.to);
				var nm = this.endpointName(ep);
				if (nm && g.names.indexOf(nm) < 0)
					g.names.push(nm);
				var rb = this.remoteBlock(idx, e.to);
				if (rb)
					g.blocked = rb;
			}
			if (!g.kept && this.pairBlocks(idx, e.from, [ e.to ]).length)
				g.kept = true;
			var pk = e.from + '|' + key;
			pairs[pk] = (pairs[pk] || 0) + e.bytes;
		}

		var macMatches = function(d) {
			if (!filter)
				return true;
			var hay = [ d.name, d.hostname, d.mac ].concat(d.ips || []).join(' ').toLowerCase();
			return hay.indexOf(filter) >= 0;
		};
		var groupMatches = function(g) {
			if (!filter)
				return false;
			var hay = [ g.key ].concat(g.members, g.names).join(' ').toLowerCase();
			return hay.indexOf(filter) >= 0;
		};

		/* which devices and groups survive the filter */
		var keepDev = {}, keepGroup = {}, k;
		for (k in byMac)
			if (macMatches(byMac[k]))
				keepDev[k] = true;
		for (k in groups)
			if (!filter || groupMatches(groups[k]))
				keepGroup[k] = true;
		if (filter) {
			for (k in pairs) {
				var mac = k.split('|')[0], gk = k.slice(mac.length + 1);
				if (keepDev[mac] && !groupMatches(groups[gk]) && macMatches(byMac[mac]))
					keepGroup[gk] = true;
				else if (keepGroup[gk] && groupMatches(groups[gk]))
					keepDev[mac] = true;
			}
		}

		/* what the owner blocked is drawn before the heaviest rest: it is
		 * where they lift the block, even once its traffic has stopped */
		var blockedFirst = function(k) { return groups[k].kept || groups[k].blocked ? 1 : 0; };
		var ranked = Object.keys(keepGroup).sort(function(a, b) {
			return blockedFirst(b) - blockedFirst(a) || groups[b].bytes - groups[a].bytes || (a < b ? -1 : 1);
		});
		var shown = {}, other = null;
		for (i = 0; i < ranked.length; i++) {
			if (i < maxGroups)
				shown[ranked[i]] = true;
			else {
				if (!other)
					other = { id: 'g:*other', key: '*other', kind: 'other', bytes: 0,
						members: [], names: [], folded: 0 };
				other.bytes += groups[ranked[i]].bytes;
				other.folded++;
				other.members = other.members.concat(groups[ranked[i]].members);
			}
		}

		var macs = Object.keys(keepDev).sort();
		for (i = 0; i < macs.length; i++) {
			var d = byMac[macs[i]];
			nodes.push({ id: d.mac, kind: 'device', label: this.deviceLabel(d), device: d,
				bytes: 0, state: this.deviceState(d, idx, now) });
		}
		for (i = 0; i < ranked.length; i++) {
			if (!shown[ranked[i]])
				continue;
			var gg = groups[ranked[i]];
			gg.label = gg.key;
			gg.state = gg.blocked ? 'blocked' : 'normal';
			nodes.push(gg);
		}
		if (other) {
			other.label = _('%d others').format(other.folded);
			other.state = 'normal';
			nodes.push(other);
		}

		var outEdges = [], merged = {}, devBytes = {};
		for (k in pairs) {
			var m2 = k.split('|')[0], g2 = k.slice(m2.length + 1);
			if (!keepDev[m2] || !keepGroup[g2])
				continue;
			var to = shown[g2] ? groups[g2].id : 'g:*other';
			var mk = m2 + '|' + to;
			merged[mk] = (merged[mk] || 0) + pairs[k];
			devBytes[m2] = (devBytes[m2] || 0) + pairs[k];
		}
		var byGroupId = {};
		for (k in groups)
			byGroupId[groups[k].id] = groups[k];
		if (other)
			byGroupId[other.id] = other;
		for (k in merged) {
			var from = k.split('|')[0], toId = k.slice(from.length + 1);
			var members = (byGroupId[toId] || {}).members || [];
			var pb = this.pairBlocks(idx, from, members);
			outEdges.push({ from: from, to: toId, bytes: merged[k], blocked: pb.length ? pb : null });
		}
		for (i = 0; i < nodes.length; i++)
			if (nodes[i].kind == 'device')
				nodes[i].bytes = devBytes[nodes[i].id] || 0;

		return { nodes: nodes, edges: outEdges, index: idx,
			groups: ranked.length, folded: other ? other.folded : 0 };
	},

	/*
	 * A failed call as a sentence. LuCI's rpc rejects with an Error whose
	 * message names the ubus status ("... failed with ubus code 2: Invalid
	 * argument") or the HTTP failure; people get what failed and why, not
	 * the frame.
	 */
	/*
	 * Every page of a paged list (devices, flows): call(limit, offset)
	 * answers { <key>: [...], remaining }; pages are asked one after the
	 * other until none remain. A failed page rejects, so the caller's
	 * resolveDefault keeps what it had rather than half a list.
	 */
	allPages: function(call, key, size) {
		var out = [];
		function next(offset) {
			return call(size, offset).then(function(res) {
				var got = (res && typeof(res) == 'object' && Array.isArray(res[key])) ? res[key] : null;
				if (!got)
					throw new Error('RPC call failed with ubus code ' + (typeof(res) == 'number' ? res : 9));
				out = out.concat(got);
				if (res.remaining > 0 && got.length > 0)
					return next(offset + got.length);
				return out;
			});
		}
		return next(0);
	},

	failure: function(what, err) {
		var msg = String((err && err.message) || err || '');
		var why;
		var m = msg.match(/ubus code (\d+)/);
		if (m)
			why = {
				2: _('the router refused the request as invalid'),
				3: _('this version of spin-lite cannot do that'),
				4: _('it no longer exists'),
				6: _('you are not allowed to do that'),
				7: _('the router took too long to answer')
			}[+m[1]] || _('the router reported an error');
		else if (/error -32000|object not found/i.test(msg))
			why = _('the spin-lite service is not running on the router');
		else if (/error -32002|access denied/i.test(msg))
			why = _('you are not allowed to do that');
		else if (/HTTP error (401|403)/.test(msg))
			why = _('your session has expired; log in again');
		else if (/HTTP error/.test(msg) || /fetch|network|timeout|abort/i.test(msg))
			why = _('the router did not answer');
		else
			why = _('an unexpected error happened');
		return _('%s failed: %s.').format(what, why);
	}
});
