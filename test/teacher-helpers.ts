import type { LightMyRequestResponse } from 'fastify'

export interface ShownCard {
  name: string
  username: string
  pin: string
  school: string
  schoolCode: string
  className: string
}

const unescape = (s: string) =>
  s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&')

/** The login cards on a cards page, as a teacher would read them off the paper. */
export function cardsOn(res: LightMyRequestResponse): ShownCard[] {
  return [...res.body.matchAll(/<div class="login-card">([\s\S]*?)<\/div>/g)].map((m) => {
    const field = (re: RegExp) => unescape(re.exec(m[1])?.[1] ?? '')
    return {
      name: field(/class="card-name">([^<]*)</),
      username: field(/class="username[^"]*">([^<]*)</),
      pin: field(/class="pin">([^<]*)</),
      school: field(/class="card-school">([^<]*)</),
      schoolCode: field(/class="school-code[^"]*">([^<]*)</),
      className: field(/class="card-class">([^<]*)</),
    }
  })
}
