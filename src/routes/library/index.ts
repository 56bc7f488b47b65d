import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { requireRole } from '../../plugins/auth.ts'
import { createEmbedder } from '../../services/embeddings/index.ts'
import { byGrade, findReadyTextbook, listLibrary, listSubjectNames, pageBlocks, parseGrade, parseSubject, readPage, subjectNamer } from '../../services/library/catalog.ts'
import { searchLibrary, SEARCH_MAX_LENGTH } from '../../services/library/search.ts'
import type { RouteOptions } from '../index.ts'

// Filters are forgiving: an unknown grade or subject just means "all"; only the shape is checked here.
const Filters = Type.Object({
  grade: Type.Optional(Type.String({ maxLength: 20 })),
  subject: Type.Optional(Type.String({ maxLength: 50 })),
})
const SearchQuery = Type.Object({
  q: Type.Optional(Type.String({ maxLength: 2000 })),
  grade: Type.Optional(Type.String({ maxLength: 20 })),
  subject: Type.Optional(Type.String({ maxLength: 50 })),
})
const PageQuery = Type.Object({ page: Type.Optional(Type.String({ maxLength: 100 })) })
/** Ids in URLs are 1–9 digits; anything else does not match a route and is a 404. */
const BOOK = '/library/:id(^\\d{1,9}$)'

/** The library: every signed-in person reads the ready textbooks and searches them. */
const libraryRoutes: FastifyPluginAsync<RouteOptions> = async (app, { database, config }) => {
  const { db } = database
  const embedder = createEmbedder(config.embeddings)
  const guard = { preHandler: requireRole('platform_admin', 'school_admin', 'teacher', 'student') }

  app.get<{ Querystring: Static<typeof Filters> }>('/library', { ...guard, schema: { querystring: Filters } }, async (request, reply) => {
    const subjects = await listSubjectNames(db)
    // A student sees their own grade unless they chose otherwise (`?grade=` means all grades).
    const ownGrade = request.user!.role === 'student' && request.query.grade === undefined ? request.user!.grade : null
    const filter = { grade: ownGrade ?? parseGrade(request.query.grade), subject: parseSubject(request.query.subject, subjects) }
    const groups = byGrade(await listLibrary(db, filter))
    return reply.page('library/index', { subjects, subjectName: subjectNamer(subjects, request.lang), filter, groups, ownGrade, search: { q: '', grade: null, subject: null } })
  })

  app.get<{ Querystring: Static<typeof SearchQuery> }>('/library/search', { ...guard, schema: { querystring: SearchQuery } }, async (request, reply) => {
    const subjects = await listSubjectNames(db)
    const search = { q: (request.query.q ?? '').trim(), grade: parseGrade(request.query.grade), subject: parseSubject(request.query.subject, subjects) }
    if (search.q.length > SEARCH_MAX_LENGTH) return reply.page('library/search', { subjects, subjectName: subjectNamer(subjects, request.lang), search, results: null, error: 'library.search.tooLong' }, 422)
    const user = request.user!
    const results = search.q ? await searchLibrary(db, embedder, search, user.role === 'student' ? user.grade : null) : null
    return reply.page('library/search', { subjects, subjectName: subjectNamer(subjects, request.lang), search, results, error: null })
  })

  app.get<{ Params: { id: string }; Querystring: Static<typeof PageQuery> }>(BOOK, { ...guard, schema: { querystring: PageQuery } }, async (request, reply) => {
    const [subjects, book] = await Promise.all([listSubjectNames(db), findReadyTextbook(db, Number(request.params.id))])
    const page = await readPage(db, book, request.query.page)
    // The chat is another area; its link appears once that area exists, so no link is ever broken.
    const canAsk = request.user!.role === 'student' && app.hasRoute({ method: 'GET', url: '/chat' })
    return reply.page('library/book', { subjectName: subjectNamer(subjects, request.lang), book, page, blocks: pageBlocks(page.text, book.toc), canAsk })
  })
}
export default libraryRoutes
