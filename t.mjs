import { PGlite } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm'
let t=Date.now()
const db = await PGlite.create({ extensions: { vector, pg_trgm } })
console.log('boot', Date.now()-t); t=Date.now()
await db.exec('create extension vector; create extension pg_trgm; create table t(id serial primary key, e vector(3), s text)')
await db.exec("insert into t(e,s) values ('[1,2,3]','hello')")
console.log((await db.query("select e <-> '[1,1,1]' as d, similarity(s,'helo') from t")).rows)
t=Date.now()
const dump = await db.dumpDataDir('none')
console.log('dump', Date.now()-t, dump.size); t=Date.now()
const db2 = await PGlite.create({ loadDataDir: dump, extensions: { vector, pg_trgm } })
console.log('load', Date.now()-t, (await db2.query('select count(*) from t')).rows)
