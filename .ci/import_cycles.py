"""Fails when modules of a Rust source tree import each other, directly or round a loop.

Reads every `.rs` file under the given folder, strips comments and `#[cfg(test)] mod tests`,
and draws an edge from a module to every module it names (`crate::…`, `super::…`, and relative
`use child::…`). Any strongly connected component of more than one module is a cycle.
Usage: import_cycles.py src
"""
import re,os,sys
root=sys.argv[1]
files={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if f.endswith('.rs'):
            full=os.path.join(dp,f); rel=os.path.relpath(full,root)[:-3]
            files[rel.replace('/mod','').replace('/','::')]=(open(full).read(), f=='mod.rs')
mods=set(files)
def resolve(path):
    parts=path.split('::')
    for n in range(len(parts),0,-1):
        c='::'.join(parts[:n])
        if c in mods: return c
g={m:set() for m in mods}
for m,(s,is_mod) in files.items():
    # Comments (a `//` at a line's start or after a blank, not the one in "amqp://").
    s=re.sub(r'(^|\s)//[^\n]*',r'\1',s)
    # Grouped imports, one level: `crate::a::{b, c::d}` -> `crate::a::b`, `crate::a::c::d`.
    s=re.sub(r'\b((?:crate|super)::(?:[a-z_]+::)*)\{([^{}]*)\}',
             lambda m: ' '.join(m.group(1)+item.strip() for item in m.group(2).split(',') if item.strip()),s)
    s=re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*','',s,flags=re.S)
    base=m
    parent=m.rsplit('::',1)[0] if '::' in m else ''
    for p in re.findall(r'crate::([a-z_:]+)',s):
        r=resolve(p.strip(':'))
        if r and r!=m: g[m].add(r)
    for p in re.findall(r'\bsuper::([a-z_:]+)',s):
        r=resolve(((parent+'::') if parent else '')+p.strip(':'))
        if r and r!=m: g[m].add(r)
    for p in re.findall(r'\buse (?!crate|super|std|self)([a-z_]+)::',s):
        r=resolve(((base+'::') if base else '')+p)
        if r and r!=m: g[m].add(r)
idx={};low={};st=[];on=set();out=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: out.append(comp)
for v in g:
    if v not in idx: sc(v)
print("import cycles:", out or "none", f"({len(mods)} modules)")
sys.exit(1 if out else 0)
