from django.urls import path

from . import views

urlpatterns = [
    path("profile/", views.profile, name="profile"),
    path("tokens/<int:pk>/revoke", views.revoke_token, name="revoke-token"),
]
