from django.urls import path

from . import views

urlpatterns = [
    path("search", views.search, name="graph-search"),
    path("entities/<slug:uid>", views.entity, name="graph-entity"),
    path("recordings/<int:pk>", views.recording_fragment, name="graph-recording"),
    path("explore", views.explore, name="graph-explore"),
    path("neighbours", views.neighbours, name="graph-neighbours"),
]
