//! `/friend/set/{user_id}` and `/friend/delete/{user_id}`: directed follow edges, idempotent.
//! A change that concerns a celebrity is carried to the follower's live sessions, and the follow
//! that makes an author a celebrity starts the author's switch.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::AuthenticatedUser;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::realtime::control::Control;
use crate::realtime::fanout::FanoutJob;
use crate::store::friends::FollowChange;
use crate::store::{self, celebrities, friends, users, DbConn};

pub async fn set(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let friend = *friend;
    if friend == me {
        return Err(ApiError::BadRequest("you cannot follow yourself".into()));
    }
    let mut conn = store::connection(&state.pool).await?;
    if !users::exists_by_id(&mut conn, friend).await? {
        return Err(ApiError::NotFound("user not found".into()));
    }
    // `NoSuchUser` (404) if the user was deleted between the check and the insert.
    let change = friends::follow(&mut conn, me, friend).await?;
    if let Some(change) = change {
        followed(&state, &mut conn, me, friend, change).await;
    }
    Ok(HttpResponse::Ok().finish())
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = store::connection(&state.pool).await?;
    let change = friends::unfollow(&mut conn, me, *friend).await?;
    if change.is_some_and(|change| change.celebrity) {
        let control = Control::Unwatch(*friend);
        state
            .fanout
            .announce(FanoutJob::Control {
                user_id: me,
                control,
            })
            .await;
    }
    Ok(HttpResponse::Ok().finish())
}

/// After a committed follow: a celebrity's new follower has its sessions start routing the
/// author's events; the follow that brings an author to `realtime.celebrity_followers` starts
/// the author's switch (once, whoever wins the claim), as does a follow of an author whose
/// switch went stale.
async fn followed(
    state: &AppState,
    conn: &mut DbConn,
    me: Uuid,
    friend: Uuid,
    change: FollowChange,
) {
    if change.celebrity {
        let control = Control::Watch(friend);
        state
            .fanout
            .announce(FanoutJob::Control {
                user_id: me,
                control,
            })
            .await;
    }
    // A switch left unfinished (its node died) may be claimed again once stale.
    let may_claim = !change.celebrity || change.switching;
    if may_claim && change.follower_count >= state.realtime.celebrity_followers {
        match celebrities::claim(conn, friend, state.realtime.celebrity_followers).await {
            Ok(true) => {
                state
                    .fanout
                    .announce(FanoutJob::Promote { author_id: friend })
                    .await
            }
            Ok(false) => {}
            Err(error) => log::error!("claiming {friend}'s switch to celebrity: {error}"),
        }
    }
}
