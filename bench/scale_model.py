#!/usr/bin/env python3
"""herald's scale model: load against capacity per component, from measured per-operation costs.

    bench/scale_model.py                       the model for bench/scale-inputs.json, Markdown
    bench/scale_model.py --inputs other.json   another set of inputs
    bench/scale_model.py --json                the figures as JSON

The inputs (bench/scale-inputs.json) are per-operation costs, each with where it came from
(bench/BROKER.md, bench/pgcost, bench/RESULTS.md, the issue, or an estimate), and the
deployment (nodes, cores, users, follows). docs/SCALE.md explains the model and quotes this
script's output; change an input there, run this again, and the tables follow.

Three routings are modelled:
  per-author  (realtime.author_shards = 0): a node binds author.<id> for every celebrity a local
              session follows, and user.<id> per local user;
  shards      (the default): every node binds the author shard keys once per link, so a
              celebrity's event reaches every node, which drops what no local session watches;
              user.<id> stays per local user;
  all-shards  (user_shards > 0, celebrity_followers = 1): user.<id> messages (then only follow
              changes) go under user shard keys too, which a node binds once while any local
              user is in them: no binding per connect.
Four situations: steady state, one post of the 10M-follower author, the rolling-deploy storm
(every session reconnects within the window), and the relay.
"""

import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def value(inputs, name):
    entry = inputs[name]
    return entry["value"] if isinstance(entry, dict) else entry


def model(inp):
    v = lambda name: value(inp, name)  # noqa: E731
    nodes, cores = v("nodes"), v("cores_per_node")
    online, users, follows = v("online_sessions"), v("users_total"), v("follows_per_user")
    posts = v("posts_per_sec")
    per_node = online / nodes
    online_share = online / users
    # A post of an ordinary author reaches its online followers (followers ≈ follows per user).
    online_followers = follows * online_share
    # Nodes with at least one online follower of a given author (followers spread at random).
    nodes_reached = nodes * (1 - math.exp(-online_followers / nodes))
    deliveries = posts * online_followers

    # Distinct celebrities the sessions of one node follow, per-author routing: every follow
    # edge of a local session names an author; most authors are celebrities (threshold 10).
    edges = per_node * follows
    distinct_authors = users * (1 - math.exp(-edges / users))

    broker_cores = v("broker_nodes") * v("broker_cores_per_node")
    bind_cpu_ms = v("broker_cpu_ms_per_bind")
    delivery_us = v("broker_cpu_us_per_delivery")
    msg_ms = v("broker_cpu_ms_per_msg")
    herald_delivery_us = v("herald_cpu_us_per_delivery")
    herald_drop_us = v("herald_cpu_us_per_dropped_event")
    herald_post_ms = v("herald_cpu_ms_per_post")
    herald_connect_ms = v("herald_cpu_ms_per_connect")
    pg_write_ms = v("pg_cpu_ms_per_write")
    pg_resume_ms = v("pg_cpu_ms_per_resume")
    pg_cores = v("pg_cores")
    bind_rate = v("broker_binds_per_sec_cluster")
    bytes_per_binding = v("broker_bytes_per_binding")
    broker_mem = v("broker_memory_bytes_per_node")
    storm = online / v("storm_secs")

    out = {"derived": {
        "sessions_per_node": per_node,
        "online_followers_per_post": online_followers,
        "nodes_reached_per_post_per_author": nodes_reached,
        "deliveries_per_sec": deliveries,
        "distinct_authors_bound_per_node_per_author_routing": distinct_authors,
        "storm_connects_per_sec": storm,
    }}
    rows = []

    def row(situation, component, load, capacity, unit, note=""):
        rows.append({"situation": situation, "component": component, "load": load,
                     "capacity": capacity, "unit": unit, "ratio": load / capacity if capacity else math.inf,
                     "note": note})

    for routing in ("per-author", "shards", "all-shards"):
        sharded = routing != "per-author"
        user_sharded = routing == "all-shards"
        node_msgs = posts * (nodes if sharded else nodes_reached)  # node-queue deliveries/s
        if user_sharded:
            node_msgs += v("follows_per_sec") * nodes  # each follow change reaches every node
        # --- steady state ---------------------------------------------------------------
        herald = (deliveries / nodes * herald_delivery_us / 1e6
                  + (posts * (1 - nodes_reached / nodes) * herald_drop_us / 1e6 if sharded else 0)
                  + posts / nodes * herald_post_ms / 1e3)
        row(f"steady ({routing})", "herald CPU per node", herald, cores, "cores",
            f"{deliveries / nodes:,.0f} deliveries/s and {posts / nodes:,.0f} posts/s per node"
            + (f", {posts * (1 - nodes_reached / nodes):,.0f} events/s dropped" if sharded else ""))
        broker = (posts * msg_ms / 1e3 + node_msgs * delivery_us / 1e6)
        row(f"steady ({routing})", "broker CPU (cluster)", broker, broker_cores, "cores",
            f"{posts:,.0f} publishes/s, {node_msgs:,.0f} node-queue deliveries/s")
        user_keys = min(per_node, v("user_shards")) if user_sharded else per_node
        bindings = (user_keys + (distinct_authors if not sharded else v("author_shards"))) * nodes
        row(f"steady ({routing})", "broker memory for bindings (every broker node holds all)",
            bindings * bytes_per_binding, broker_mem, "bytes",
            f"{bindings:,.0f} bindings cluster-wide")
        row(f"steady ({routing})", "PostgreSQL CPU (writes)", posts * pg_write_ms / 1e3, pg_cores,
            "cores", f"{posts:,.0f} post writes/s")
        # --- the rolling-deploy storm -----------------------------------------------------
        binds_per_connect = 1 + (0 if sharded else
                                 follows * v("storm_unbound_author_share"))
        storm_binds = storm * binds_per_connect * 2  # bind on the new node, unbind on the old
        if user_sharded:
            # Every node binds its user shards once per link: nodes x shards per deploy.
            binds_per_connect = nodes * min(per_node, v("user_shards")) / online
            storm_binds = nodes * min(per_node, v("user_shards")) * 2 / v("storm_secs")
        row(f"storm ({routing})", "broker binding ops (cluster-wide metadata)", storm_binds,
            bind_rate, "ops/s", f"{binds_per_connect:.1f} binds per connect, as many removals (unbinds, or the deletion "
            "of the node queue it left)")
        row(f"storm ({routing})", "broker CPU for binding ops", storm_binds * bind_cpu_ms / 1e3,
            broker_cores, "cores", "every broker node applies every binding op")
        row(f"storm ({routing})", "herald CPU per node (connects)",
            storm / nodes * herald_connect_ms / 1e3 + herald, cores, "cores",
            f"{storm / nodes:,.0f} connects/s per node on top of the steady load")
        row(f"storm ({routing})", "PostgreSQL CPU (resume reads + writes)",
            storm * pg_resume_ms / 1e3 + posts * pg_write_ms / 1e3, pg_cores, "cores",
            f"{storm:,.0f} resumes/s")
    # --- one post of the 10M-follower author -------------------------------------------------
    celeb_online = v("celebrity_followers") * online_share
    per_node_burst = celeb_online / nodes
    burst_secs = per_node_burst * herald_delivery_us / 1e6 / cores
    row("celebrity post", "herald: time to hand one post to its online followers per node",
        burst_secs, v("celebrity_target_secs"), "s",
        f"{celeb_online:,.0f} online followers, {per_node_burst:,.0f} per node; 1 publish, "
        f"{nodes} node-queue deliveries")
    # --- the relay ------------------------------------------------------------------------
    # One relay (the instance holding the advisory lock) numbers and publishes every instance's
    # events: its CPU, and its throughput against the ceiling measured by `bench/run R1`.
    relay_pub_us = v("relay_cpu_us_per_publish")
    once_share = v("posts_published_once_share")
    publishes_per_post = once_share + (1 - once_share) * v("followers_below_threshold")
    publishes = posts * publishes_per_post
    row("steady (both)", "relay (one process, one core)", publishes * relay_pub_us / 1e6, 1,
        "cores", f"{publishes:,.0f} publishes/s")
    ceiling = v("relay_publishes_per_sec_ceiling")
    row("steady (both)", "relay throughput (one relay for the whole cluster)", publishes, ceiling,
        "publishes/s", f"{publishes_per_post:.2f} publishes per post; the relay's ceiling is reached at "
        f"{ceiling / publishes_per_post:,.0f} posts/s")
    out["derived"]["relay_ceiling_posts_per_sec"] = ceiling / publishes_per_post
    out["rows"] = rows
    return out


def fmt(x, unit):
    if unit == "bytes":
        for u, d in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
            if x >= d:
                return f"{x / d:,.1f} {u}"
        return f"{x:,.0f} B"
    if x >= 100:
        return f"{x:,.0f} {unit}"
    return f"{x:,.2f} {unit}"


def markdown(result, inputs):
    lines = ["| situation | component | load | capacity | load/capacity | what |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        flag = " **over**" if r["ratio"] > 1 else ""
        lines.append(f"| {r['situation']} | {r['component']} | {fmt(r['load'], r['unit'])} | "
                     f"{fmt(r['capacity'], r['unit'])} | {r['ratio']:.2f}{flag} | {r['note']} |")
    lines.append("")
    lines.append("Derived: " + "; ".join(f"{k} = {v:,.1f}" for k, v in result["derived"].items()))
    lines.append("")
    lines.append("| input | value | source |")
    lines.append("|---|---|---|")
    for name, entry in inputs.items():
        if isinstance(entry, dict):
            lines.append(f"| {name} | {entry['value']} | {entry.get('source', '')} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", default=os.path.join(HERE, "scale-inputs.json"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with open(args.inputs) as f:
        inputs = json.load(f)
    result = model(inputs)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(markdown(result, inputs))


if __name__ == "__main__":
    main()
